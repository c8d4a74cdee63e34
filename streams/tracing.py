"""W3C trace context in Kafka message headers, and the messaging spans around them.

Producers inject ``traceparent``/``tracestate`` of the span that decided an event;
consumers extract it to link their processing span to it, or to parent the next
decision on it, so one trace follows the causal chain across services. Spans follow
the OpenTelemetry messaging semantic conventions: ``send {topic}`` (PRODUCER) and
``process {topic}`` (CONSUMER, linked to every message's producer; with exactly one
message and no explicit parent it is also that message's child).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

Headers = list[tuple[str, bytes]]

MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
MESSAGING_DESTINATION_PARTITION_ID = "messaging.destination.partition.id"
MESSAGING_CONSUMER_GROUP_NAME = "messaging.consumer.group.name"
MESSAGING_BATCH_MESSAGE_COUNT = "messaging.batch.message_count"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_KAFKA_MESSAGE_KEY = "messaging.kafka.message.key"

_propagator = TraceContextTextMapPropagator()


class _HeaderSetter(Setter[Headers]):
    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k != key]
        carrier.append((key, value.encode("ascii")))


class _HeaderGetter(Getter[Sequence[tuple[str, bytes | str | None]]]):
    """Reads W3C fields from a header list; keys case-insensitive, values bytes or str."""

    def get(self, carrier: Sequence[tuple[str, bytes | str | None]], key: str) -> list[str] | None:
        wanted = key.lower()
        values = []
        for name, value in carrier or ():
            if name.lower() != wanted or value is None:
                continue
            values.append(value.decode("latin-1") if isinstance(value, bytes) else value)
        return values or None

    def keys(self, carrier: Sequence[tuple[str, bytes | str | None]]) -> list[str]:
        return [k for k, _ in carrier or ()]


_setter = _HeaderSetter()
_getter = _HeaderGetter()


def inject_trace_headers(headers: Headers, context: Context | None = None) -> Headers:
    """Add the trace context (the current one by default) to ``headers``, in place."""
    _propagator.inject(headers, context=context, setter=_setter)
    return headers


def extract_trace_context(headers: Sequence[tuple[str, bytes | str | None]] | None) -> Context:
    """The remote span context carried by a message's headers (an empty context if none).

    Extracted into a fresh context, never the caller's, so a message without trace
    headers does not appear to come from the span that happens to be current.
    """
    return _propagator.extract(headers or [], context=Context(), getter=_getter)


def header_value(headers: Sequence[tuple[str, bytes | None]] | None, key: str) -> str | None:
    """The last value of one header, decoded as UTF-8, or None."""
    for k, v in reversed(headers or []):
        if k == key and v is not None:
            return v.decode("utf-8", "replace")
    return None


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
        MESSAGING_SYSTEM: "kafka",
        MESSAGING_OPERATION_NAME: "send",
        MESSAGING_OPERATION_TYPE: "send",
        MESSAGING_DESTINATION_NAME: topic,
    }
    key_text = _key_text(key)
    if key_text is not None:
        attrs[MESSAGING_KAFKA_MESSAGE_KEY] = key_text
    if message_id is not None:
        attrs[MESSAGING_MESSAGE_ID] = message_id
    if partition is not None:
        attrs[MESSAGING_DESTINATION_PARTITION_ID] = str(partition)
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
        MESSAGING_SYSTEM: "kafka",
        MESSAGING_OPERATION_NAME: "process",
        MESSAGING_OPERATION_TYPE: "process",
        MESSAGING_DESTINATION_NAME: topic,
        MESSAGING_CONSUMER_GROUP_NAME: group,
        MESSAGING_BATCH_MESSAGE_COUNT: len(contexts),
    }
    if partition is not None:
        attrs[MESSAGING_DESTINATION_PARTITION_ID] = str(partition)
    if attributes:
        attrs.update(attributes)
    with tracer.start_as_current_span(
        f"process {topic}", context=parent, kind=SpanKind.CONSUMER, attributes=attrs, links=links
    ) as span:
        yield span
