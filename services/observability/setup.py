"""OpenTelemetry setup for one driftloop service, configured by the standard ``OTEL_*`` variables.

``init_telemetry("drift")`` returns a :class:`Telemetry` holding that service's own
``TracerProvider``/``MeterProvider`` (resource ``service.name`` = the service), its
tracer and meter, and a lazily built :class:`PipelineMetrics`. Several services may
share one process (the local demo): each gets its own providers and resource. The
first real (non-test) call also installs its providers as the process globals, so
library instrumentation that uses the global API still reports somewhere. Calling
again with the same service name returns the same object.

Variables read (see docs/SRE.md, "Telemetry configuration"):

- ``OTEL_SDK_DISABLED=true``: no-op tracer and meter.
- ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``: comma-separated list of
  ``otlp``, ``console``, ``file``, ``none`` (metrics also ``prometheus``: served on
  ``/metrics`` by :mod:`services.observability.health`). Default: ``otlp`` when an OTLP
  endpoint variable is set, otherwise ``none``.
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` (and the ``_TRACES_``/``_METRICS_`` variants, headers,
  timeout, compression, temporality preference): read by the OTLP exporter itself.
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` (and per-signal): only ``http/protobuf`` is installed;
  anything else is a configuration error raised at start-up.
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_METRIC_EXPORT_INTERVAL``,
  ``OTEL_BSP_*``: read by the SDK itself.
- ``OTEL_RESOURCE_ATTRIBUTES``: extra resource attributes; ``OTEL_SERVICE_NAME`` (or a
  ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``) overrides the per-service name.
- ``observability.otel_file`` (``DRIFTLOOP_OBSERVABILITY__OTEL_FILE``): where the
  ``file`` exporter appends OTLP-JSON lines (default ``.driftloop/otel.jsonl``); safe
  to share between processes.

The variables are read once, by the configuration (``Settings.observability``); this
module only interprets them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.metrics import Meter, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import NoOpTracerProvider, Tracer

from services.observability.metrics import PipelineMetrics
from services.observability.otlp_json import OtlpJsonMetricExporter, OtlpJsonSpanExporter

SCOPE_NAME = "driftloop"
SERVICE_NAMESPACE = "driftloop"
DEFAULT_OTEL_FILE = ".driftloop/otel.jsonl"
_TRACE_EXPORTERS = frozenset({"otlp", "console", "file", "none"})
_METRIC_EXPORTERS = _TRACE_EXPORTERS | {"prometheus"}
_SUPPORTED_PROTOCOL = "http/protobuf"

_lock = threading.Lock()
_by_service: dict[str, Telemetry] = {}
_globals_set = False


class TelemetryConfigError(ValueError):
    """An ``OTEL_*`` setting this build cannot honour (named in the message)."""


def _exporter_list(
    env: Mapping[str, str], name: str, allowed: frozenset[str], default: str
) -> tuple[str, ...]:
    raw = env.get(name, "").strip() or default
    chosen = tuple(dict.fromkeys(p.strip().lower() for p in raw.split(",") if p.strip()))
    unknown = [p for p in chosen if p not in allowed]
    if unknown:
        raise TelemetryConfigError(
            f"{name}={raw!r}: unsupported {', '.join(unknown)}; use {', '.join(sorted(allowed))}"
        )
    if "none" in chosen:
        return ()
    return chosen


def _protocol(env: Mapping[str, str], signal: str) -> str:
    return (
        env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or _SUPPORTED_PROTOCOL
    ).strip().lower()


@dataclass(frozen=True)
class TelemetryConfig:
    """What :func:`init_telemetry` builds, from the configuration's ``observability``."""

    traces_exporters: tuple[str, ...] = ()
    metrics_exporters: tuple[str, ...] = ()
    file_path: str = DEFAULT_OTEL_FILE
    service_name_override: str | None = None
    disabled: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], file_path: str = DEFAULT_OTEL_FILE
                 ) -> TelemetryConfig:
        """Interpret the ``OTEL_*`` variables in ``env`` (see the module docstring)."""
        has_endpoint = any(
            env.get(v)
            for v in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                      "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        )
        default = "otlp" if has_endpoint else "none"
        traces = _exporter_list(env, "OTEL_TRACES_EXPORTER", _TRACE_EXPORTERS, default)
        metrics = _exporter_list(env, "OTEL_METRICS_EXPORTER", _METRIC_EXPORTERS, default)
        for signal, chosen in (("TRACES", traces), ("METRICS", metrics)):
            protocol = _protocol(env, signal)
            if "otlp" in chosen and protocol != _SUPPORTED_PROTOCOL:
                raise TelemetryConfigError(
                    f"OTLP protocol {protocol!r} for {signal.lower()} is not installed; "
                    f"set OTEL_EXPORTER_OTLP_PROTOCOL={_SUPPORTED_PROTOCOL} (port 4318)"
                )
        return cls(
            traces_exporters=traces,
            metrics_exporters=metrics,
            file_path=file_path,
            service_name_override=(env.get("OTEL_SERVICE_NAME") or "").strip()
            or _resource_service_name(env),
            disabled=env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true",
        )

    @classmethod
    def from_settings(cls, observability: Any) -> TelemetryConfig:
        """From the configuration's ``observability`` section (``otel`` and ``otel_file``)."""
        return cls.from_env(observability.otel, str(observability.otel_file))


@dataclass(eq=False)
class Telemetry:
    """One service's tracer, meter and their providers. ``shutdown()`` flushes."""

    service_name: str
    tracer: Tracer
    meter: Meter
    resource: Resource
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    prometheus_registry: Any | None = None  # prometheus_client.CollectorRegistry
    _key: str | None = None

    @cached_property
    def metrics(self) -> PipelineMetrics:
        """The pipeline instruments on this service's meter (built once)."""
        return PipelineMetrics(self.meter)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export everything pending now; True when every exporter finished in time."""
        ok = True
        if self.tracer_provider is not None:
            ok = self.tracer_provider.force_flush(timeout_millis) and ok
        if self.meter_provider is not None:
            ok = self.meter_provider.force_flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        """Flush and stop this service's providers (idempotent)."""
        with _lock:
            if self._key is not None and _by_service.get(self._key) is self:
                del _by_service[self._key]
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


@dataclass(eq=False)
class InMemoryTelemetry(Telemetry):
    """Telemetry kept in memory, for tests: finished spans and collected metric points."""

    span_exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    metric_reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)

    def finished_spans(self) -> list[Any]:
        """Every span ended so far (``ReadableSpan``), in end order."""
        return list(self.span_exporter.get_finished_spans())

    def metric_points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, point)`` for each data point of metric ``name`` collected now.

        ``point`` is the SDK data point: ``.value`` for sums and gauges, ``.sum``,
        ``.count`` and ``.bucket_counts`` for histograms.
        """
        data = self.metric_reader.get_metrics_data()
        points: list[tuple[dict[str, Any], Any]] = []
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        points.extend(
                            (dict(p.attributes or {}), p) for p in metric.data.data_points
                        )
        return points

    def clear_spans(self) -> None:
        self.span_exporter.clear()


def _resource(service_name: str, config: TelemetryConfig) -> Resource:
    """Our defaults < ``OTEL_RESOURCE_ATTRIBUTES`` < the service name (or its override)."""
    from_env = Resource.create({})  # telemetry.sdk.* and OTEL_RESOURCE_ATTRIBUTES
    defaults = Resource(
        {"service.namespace": SERVICE_NAMESPACE, "service.instance.id": uuid.uuid4().hex}
    )
    env_attrs = {k: v for k, v in from_env.attributes.items() if k != SERVICE_NAME}
    name = config.service_name_override or service_name
    return defaults.merge(Resource(env_attrs)).merge(Resource({SERVICE_NAME: name}))


def _resource_service_name(env: Mapping[str, str]) -> str | None:
    """``service.name`` given in ``OTEL_RESOURCE_ATTRIBUTES``, if any."""
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = item.partition("=")
        if key.strip() == SERVICE_NAME and value.strip():
            return value.strip()
    return None


def _span_processors(config: TelemetryConfig) -> list[Any]:
    processors: list[Any] = []
    for name in config.traces_exporters:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processors.append(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            processors.append(SimpleSpanProcessor(ConsoleSpanExporter()))
        elif name == "file":
            processors.append(BatchSpanProcessor(OtlpJsonSpanExporter(config.file_path)))
    return processors


def _metric_readers(config: TelemetryConfig) -> tuple[list[MetricReader], Any | None]:
    readers: list[MetricReader] = []
    registry = None
    for name in config.metrics_exporters:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        elif name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        elif name == "file":
            readers.append(PeriodicExportingMetricReader(OtlpJsonMetricExporter(config.file_path)))
        elif name == "prometheus":
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry(auto_describe=False)
            readers.append(PrometheusMetricReader(registry=registry))
    return readers, registry


def _scope_version() -> str:
    try:
        from importlib.metadata import version

        return version("driftloop")
    except Exception:  # package not installed (source checkout)
        return "0"


def _resolve_config(settings: Any) -> TelemetryConfig:
    if isinstance(settings, TelemetryConfig):
        return settings
    if settings is None:
        from streams.settings import load_settings

        settings = load_settings()
    return TelemetryConfig.from_settings(getattr(settings, "observability", settings))


def init_telemetry(
    service_name: str, *, settings: Any = None, install_global: bool = True
) -> Telemetry:
    """Set up (once per service and process) and return ``service_name``'s telemetry.

    ``settings`` may be a :class:`TelemetryConfig`, the :class:`~streams.settings.Settings`
    or their ``observability`` section, or ``None`` (load the configuration). The first call with
    ``install_global`` makes its providers the process-wide globals (the OpenTelemetry
    API allows that once); tests pass ``install_global=False`` to leave them alone.
    """
    global _globals_set
    with _lock:
        existing = _by_service.get(service_name)
        if existing is not None:
            return existing
        config = _resolve_config(settings)
        resource = _resource(service_name, config)
        name = str(resource.attributes[SERVICE_NAME])
        if config.disabled:
            telemetry = Telemetry(
                service_name=name,
                tracer=NoOpTracerProvider().get_tracer(SCOPE_NAME),
                meter=NoOpMeterProvider().get_meter(SCOPE_NAME),
                resource=resource,
                _key=service_name,
            )
            _by_service[service_name] = telemetry
            return telemetry
        tracer_provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER
        for processor in _span_processors(config):
            tracer_provider.add_span_processor(processor)
        readers, registry = _metric_readers(config)
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        version = _scope_version()
        telemetry = Telemetry(
            service_name=name,
            tracer=tracer_provider.get_tracer(SCOPE_NAME, version),
            meter=meter_provider.get_meter(SCOPE_NAME, version),
            resource=resource,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            prometheus_registry=registry,
            _key=service_name,
        )
        if install_global and not _globals_set:
            otel_trace.set_tracer_provider(tracer_provider)
            otel_metrics.set_meter_provider(meter_provider)
            _globals_set = True
        _by_service[service_name] = telemetry
        return telemetry


def in_memory_telemetry(service_name: str) -> InMemoryTelemetry:
    """Fresh telemetry that records every span and metric in memory (never global)."""
    span_exporter = InMemorySpanExporter()
    metric_reader = InMemoryMetricReader()
    resource = Resource({SERVICE_NAME: service_name, "service.namespace": SERVICE_NAMESPACE})
    tracer_provider = TracerProvider(resource=resource, sampler=ALWAYS_ON)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    meter_provider = MeterProvider(resource=resource, metric_readers=[metric_reader])
    return InMemoryTelemetry(
        service_name=service_name,
        tracer=tracer_provider.get_tracer(SCOPE_NAME),
        meter=meter_provider.get_meter(SCOPE_NAME),
        resource=resource,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        span_exporter=span_exporter,
        metric_reader=metric_reader,
    )
