"""Observability for every driftloop service: OpenTelemetry setup, messaging spans,
pipeline metrics, OTLP-JSON files and the health endpoint.

Submodules import lazily: ``services.observability.messaging`` pulls in only the
OpenTelemetry API, so the streams layer can use it on hot paths.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "init_telemetry": "services.observability.setup",
    "in_memory_telemetry": "services.observability.setup",
    "Telemetry": "services.observability.setup",
    "InMemoryTelemetry": "services.observability.setup",
    "TelemetryConfig": "services.observability.setup",
    "PipelineMetrics": "services.observability.metrics",
    "HealthServer": "services.observability.health",
    "start_health_server": "services.observability.health",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
