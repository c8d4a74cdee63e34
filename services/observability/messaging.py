"""Kafka spans after the OpenTelemetry messaging semantic conventions, and W3C headers.

Only the OpenTelemetry API is imported here (no SDK, no exporter), so the module is
cheap to import and has no side effects; header propagation is ``streams.tracing``'s.

- ``producer_span``: ``SpanKind.PRODUCER`` span named ``send {topic}``. Inject its
  context into the message headers (``inject_headers()`` inside the ``with``).
- ``process_batch_span``: ``SpanKind.CONSUMER`` span named ``process {topic}`` that
  links to every message's producer context. With exactly one message (and no explicit
  parent) it is also a child of that message's context, so a causal chain that goes
  one message at a time (drift decision → retrain request → training run → candidate
  → verdict → promotion) stays one trace. A batch of several messages starts from the
  current context and carries the links.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from services.observability import attributes as attr
from streams.tracing import extract_trace_context, inject_trace_headers

Headers = list[tuple[str, bytes]]
"""confluent-kafka header list (values may also arrive as ``str`` or ``None``)."""


def _key_text(key: str | bytes | None) -> str | None:
    if key is None:
        return None
    if isinstance(key, bytes):
        return key.decode("utf-8", errors="replace")
    return key


@contextmanager
def producer_span(
    tracer: Tracer,
    topic: str,
    key: str | bytes | None = None,
    *,
    message_id: str | None = None,
    partition: int | None = None,
    attributes: dict[str, AttributeValue] | None = None,
    context: Context | None = None,
) -> Iterator[Span]:
    """A ``send {topic}`` PRODUCER span, current while the block runs."""
    attrs: dict[str, AttributeValue] = {
        attr.MESSAGING_SYSTEM: "kafka",
        attr.MESSAGING_OPERATION_NAME: "send",
        attr.MESSAGING_OPERATION_TYPE: "send",
        attr.MESSAGING_DESTINATION_NAME: topic,
    }
    key_text = _key_text(key)
    if key_text is not None:
        attrs[attr.MESSAGING_KAFKA_MESSAGE_KEY] = key_text
    if message_id is not None:
        attrs[attr.MESSAGING_MESSAGE_ID] = message_id
    if partition is not None:
        attrs[attr.MESSAGING_DESTINATION_PARTITION_ID] = str(partition)
    if attributes:
        attrs.update(attributes)
    with tracer.start_as_current_span(
        f"send {topic}", context=context, kind=SpanKind.PRODUCER, attributes=attrs
    ) as span:
        yield span


def _links(contexts: Sequence[Context]) -> list[Link]:
    links = []
    for ctx in contexts:
        span_context = trace.get_current_span(ctx).get_span_context()
        if span_context.is_valid:
            links.append(Link(span_context))
    return links


@contextmanager
def process_batch_span(
    tracer: Tracer,
    topic: str,
    group: str,
    partition: int | None,
    contexts: Sequence[Context],
    *,
    parent: Context | None = None,
    attributes: dict[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """A ``process {topic}`` CONSUMER span linked to each message's producer context.

    ``contexts`` are the extracted contexts of the batch's messages (one per message,
    invalid ones are skipped). ``partition`` is ``None`` when the batch spans several.
    """
    links = _links(contexts)
    if parent is None and len(contexts) == 1 and links:
        parent = contexts[0]
    attrs: dict[str, AttributeValue] = {
        attr.MESSAGING_SYSTEM: "kafka",
        attr.MESSAGING_OPERATION_NAME: "process",
        attr.MESSAGING_OPERATION_TYPE: "process",
        attr.MESSAGING_DESTINATION_NAME: topic,
        attr.MESSAGING_CONSUMER_GROUP_NAME: group,
        attr.MESSAGING_BATCH_MESSAGE_COUNT: len(contexts),
    }
    if partition is not None:
        attrs[attr.MESSAGING_DESTINATION_PARTITION_ID] = str(partition)
    if attributes:
        attrs.update(attributes)
    with tracer.start_as_current_span(
        f"process {topic}", context=parent, kind=SpanKind.CONSUMER, attributes=attrs, links=links
    ) as span:
        yield span


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
