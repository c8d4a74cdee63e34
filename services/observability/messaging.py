"""Kafka spans after the OpenTelemetry messaging semantic conventions, and W3C headers.

Only the OpenTelemetry API is imported here (no SDK, no exporter), so the module is
cheap to import and has no side effects; header propagation is ``streams.tracing``'s.

- ``producer_span`` and ``process_batch_span`` (defined in ``streams.tracing``, which
  the producer and the consumer loop use, and re-exported here): ``send {topic}``
  PRODUCER spans and ``process {topic}`` CONSUMER spans linked to every message's
  producer context (with exactly one message, also that message's child).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context

from streams.tracing import (
    extract_trace_context,
    inject_trace_headers,
    process_batch_span,
    producer_span,
)

__all__ = [
    "TRACE_HEADERS",
    "extract_context",
    "inject_headers",
    "process_batch_span",
    "producer_span",
    "trace_id_hex",
    "traceparent_of",
]

Headers = list[tuple[str, bytes]]
"""confluent-kafka header list (values may also arrive as ``str`` or ``None``)."""


# ---------------------------------------------------------------- headers

TRACE_HEADERS = ("traceparent", "tracestate")


def inject_headers(ctx: Context | None = None) -> Headers:
    """``traceparent`` (and ``tracestate``) headers for ``ctx`` (default: current).

    Returns an empty list when there is no valid span in the context (e.g. tracing off).
    """
    return inject_trace_headers([], ctx)


def extract_context(headers: Sequence[tuple[str, bytes | str | None]] | None) -> Context:
    """The remote span context carried in ``headers`` (an empty context if none or invalid)."""
    return extract_trace_context(headers)


def traceparent_of(headers: Sequence[tuple[str, bytes | str | None]] | None) -> str | None:
    """The raw ``traceparent`` header value, for logs and the report-to-trace lookup."""
    for name, value in headers or ():
        if name.lower() == "traceparent" and value is not None:
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None


def trace_id_hex(ctx: Context | None = None) -> str | None:
    """The 32-hex-digit trace id of ``ctx`` (default: current), ``None`` when not valid."""
    span_context = trace.get_current_span(ctx).get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None
