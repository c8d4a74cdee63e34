"""Messaging spans follow the semantic conventions; headers carry W3C context both ways."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from services.observability.messaging import (
    extract_context,
    inject_headers,
    process_batch_span,
    producer_span,
    trace_id_hex,
    traceparent_of,
)
from services.observability.setup import in_memory_telemetry


def test_producer_span_has_messaging_attributes() -> None:
    tel = in_memory_telemetry("ingest")
    with producer_span(tel.tracer, "p.features", b"entity-7", message_id="ev1", partition=2):
        pass
    (span,) = tel.finished_spans()
    assert span.name == "send p.features"
    assert span.kind is SpanKind.PRODUCER
    assert dict(span.attributes) == {
        "messaging.system": "kafka",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": "p.features",
        "messaging.kafka.message.key": "entity-7",
        "messaging.message.id": "ev1",
        "messaging.destination.partition.id": "2",
    }
    assert span.resource.attributes["service.name"] == "ingest"


def test_inject_extract_round_trip() -> None:
    tel = in_memory_telemetry("drift")
    with producer_span(tel.tracer, "t", "k") as span:
        headers = inject_headers()
        expected = span.get_span_context()
    assert [name for name, _ in headers] == ["traceparent"]
    assert all(isinstance(value, bytes) for _, value in headers)
    ctx = extract_context([("event_id", b"abc"), *headers])
    remote = trace.get_current_span(ctx).get_span_context()
    assert remote.is_valid and remote.is_remote
    assert remote.trace_id == expected.trace_id
    assert remote.span_id == expected.span_id
    assert trace_id_hex(ctx) == format(expected.trace_id, "032x")
    assert traceparent_of(headers) == headers[0][1].decode()


def test_extract_tolerates_missing_garbage_and_str_headers() -> None:
    for headers in (None, [], [("traceparent", None)], [("traceparent", b"garbage")]):
        ctx = extract_context(headers)
        assert not trace.get_current_span(ctx).get_span_context().is_valid
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ctx = extract_context([("TraceParent", good)])
    assert trace_id_hex(ctx) == "0af7651916cd43dd8448eb211c80319c"
    assert inject_headers(Context()) == []  # nothing to propagate without a span


def test_process_batch_span_links_every_producer() -> None:
    tel = in_memory_telemetry("drift")
    contexts = []
    for key in ("a", "b", "c"):
        with producer_span(tel.tracer, "features", key):
            contexts.append(extract_context(inject_headers()))
    producers = tel.finished_spans()
    tel.clear_spans()
    with process_batch_span(tel.tracer, "features", "drift-monitor", 1, contexts):
        pass
    (span,) = tel.finished_spans()
    assert span.name == "process features"
    assert span.kind is SpanKind.CONSUMER
    assert span.attributes["messaging.operation.type"] == "process"
    assert span.attributes["messaging.consumer.group.name"] == "drift-monitor"
    assert span.attributes["messaging.destination.partition.id"] == "1"
    assert span.attributes["messaging.batch.message_count"] == 3
    assert [link.context.span_id for link in span.links] == [
        p.get_span_context().span_id for p in producers
    ]
    # a batch starts its own trace: none of the producers is its parent
    assert span.parent is None


def test_single_message_process_span_continues_the_trace() -> None:
    tel = in_memory_telemetry("train")
    with producer_span(tel.tracer, "retrain.requests", "m") as producer:
        ctx = extract_context(inject_headers())
    with (
        process_batch_span(tel.tracer, "retrain.requests", "trainers", None, [ctx]) as span,
        tel.tracer.start_as_current_span("fine-tune") as child,
    ):
        pass
    assert span.get_span_context().trace_id == producer.get_span_context().trace_id
    assert span.parent.span_id == producer.get_span_context().span_id
    assert len(span.links) == 1
    assert "messaging.destination.partition.id" not in span.attributes
    assert child.parent.span_id == span.get_span_context().span_id
