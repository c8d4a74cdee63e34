"""OTLP-JSON file exporters (traces and metrics) and a reader for the traces.

Format: the OTLP "JSON lines" file format. Each export batch becomes one line holding
one ``ExportTraceServiceRequest`` (``{"resourceSpans": [...]}``) or one
``ExportMetricsServiceRequest`` (``{"resourceMetrics": [...]}``) in the protobuf JSON
mapping, with the OTLP/JSON deviations applied: trace and span ids are lowercase hex,
enums are integers, keys are lowerCamelCase.

Several processes may append to the same file: each line is written with one
``write`` on an ``O_APPEND`` descriptor while holding an exclusive ``flock`` on it, so
lines never interleave. Traces and metrics may share a file; readers tell them apart
by the top-level key. The path comes from the setting ``observability.otel_file``
(``DRIFTLOOP_OBSERVABILITY__OTEL_FILE``; see ``services.observability.setup``).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids(node: Any) -> Any:
    """Rewrite base64 ``traceId``/``spanId``/``parentSpanId`` values as hex, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)
    return node


def to_otlp_json(message: Any) -> dict[str, Any]:
    """A protobuf OTLP request as an OTLP/JSON dict (hex ids, integer enums)."""
    return _hex_ids(MessageToDict(message, use_integers_for_enums=True))


class _LineWriter:
    """Appends whole lines to one file under an exclusive ``flock``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    view = memoryview(line)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


class OtlpJsonSpanExporter(SpanExporter):
    """Writes each span batch as one OTLP/JSON ``ExportTraceServiceRequest`` line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._writer = _LineWriter(path)
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._closed:
            return SpanExportResult.FAILURE
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            self._writer.write(to_otlp_json(encode_spans(spans)))
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._closed = True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class OtlpJsonMetricExporter(MetricExporter):
    """Writes each metrics collection as one OTLP/JSON ``ExportMetricsServiceRequest`` line."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
    ) -> None:
        super().__init__(preferred_temporality=preferred_temporality)
        self._writer = _LineWriter(path)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if not metrics_data.resource_metrics:
            return MetricExportResult.SUCCESS
        try:
            self._writer.write(to_otlp_json(encode_metrics(metrics_data)))
        except OSError:
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


# ---------------------------------------------------------------- reading

def _any_value(value: dict[str, Any]) -> Any:
    """Plain Python value of an OTLP/JSON ``AnyValue``."""
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return _attributes(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None


def _attributes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {kv["key"]: _any_value(kv.get("value", {})) for kv in items}


def iter_lines(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every parsed line of an OTLP-JSON file; a torn last line (crash mid-write) is skipped."""
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            raw = raw.strip()
            if not raw:
                continue
            try:
                yield json.loads(raw)
            except json.JSONDecodeError:
                continue


def read_spans(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Flatten the spans of an OTLP-JSON file into plain dicts, in file order.

    Each dict has ``trace_id``, ``span_id``, ``parent_span_id`` (hex, ``None`` for a
    root), ``name``, ``kind`` (OTLP enum integer: 1 internal, 2 server, 3 client,
    4 producer, 5 consumer), ``attributes``, ``links`` (``trace_id``, ``span_id``,
    ``attributes``), ``service_name``, ``start_ns``, ``end_ns`` and ``status_code``.
    Metric lines are ignored.
    """
    spans: list[dict[str, Any]] = []
    for record in iter_lines(path):
        for resource_spans in record.get("resourceSpans", []):
            resource = _attributes(resource_spans.get("resource", {}).get("attributes", []))
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    spans.append(
                        {
                            "trace_id": span["traceId"],
                            "span_id": span["spanId"],
                            "parent_span_id": span.get("parentSpanId") or None,
                            "name": span.get("name", ""),
                            "kind": int(span.get("kind", 0)),
                            "attributes": _attributes(span.get("attributes", [])),
                            "links": [
                                {
                                    "trace_id": link["traceId"],
                                    "span_id": link["spanId"],
                                    "attributes": _attributes(link.get("attributes", [])),
                                }
                                for link in span.get("links", [])
                            ],
                            "service_name": resource.get("service.name"),
                            "start_ns": int(span.get("startTimeUnixNano", 0)),
                            "end_ns": int(span.get("endTimeUnixNano", 0)),
                            "status_code": int(span.get("status", {}).get("code", 0)),
                        }
                    )
    return spans


def read_metric_names(path: str | os.PathLike[str]) -> set[str]:
    """Names of every metric present in the metric lines of an OTLP-JSON file."""
    names: set[str] = set()
    for record in iter_lines(path):
        for resource_metrics in record.get("resourceMetrics", []):
            for scope_metrics in resource_metrics.get("scopeMetrics", []):
                for metric in scope_metrics.get("metrics", []):
                    names.add(metric["name"])
    return names
