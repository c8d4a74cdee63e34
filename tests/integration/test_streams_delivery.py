"""Delivery guarantees over the real broker: round trip, dead letters, at-least-once, stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from opentelemetry.sdk.trace import TracerProvider

from services.demo.roundtrip import run_round_trip
from streams.codec import MAX_EVENT_BYTES
from streams.consumer import ConsumerLoop, Inbound
from streams.contracts import LabelEvent, new_event_id
from streams.deadletter import (
    REASON_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
)
from streams.producer import DeliveryError, EventProducer
from streams.settings import Settings, load_settings
from streams.tracing import header_value

pytestmark = pytest.mark.integration
WORKER = Path(__file__).parent / "workers" / "consume_worker.py"


def _label(i: int) -> LabelEvent:
    return LabelEvent(event_id=f"ok-{i}-{new_event_id()[:6]}", model="fraud", label=float(i % 2),
                      event_time=datetime.now(UTC))


def _read_raw(settings: Settings, topic: str, count: int, timeout: float = 30) -> list[Any]:
    consumer = Consumer(settings.kafka.consumer_config(f"raw-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            got += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    return got


def test_every_event_type_round_trips_with_headers(settings: Settings) -> None:
    from opentelemetry import trace

    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    with trace.use_span(tracer.start_span("test-root"), end_on_exit=True):
        result = run_round_trip(settings, timeout_s=30)
    assert result.received == result.sent
    assert all(result.traced.values()), result.traced
    assert result.dead_letter_reason == "not_json"


def test_malformed_input_is_dead_lettered_and_neighbours_are_processed(
    settings: Settings,
) -> None:
    topic = settings.topic("labels")
    good = [_label(i) for i in range(6)]
    bad = {
        "not_json": b"\x00\xffgarbage",
        "wrong_type": b'{"schema":"label_event/1","event_id":"b1","model":"fraud",'
                      b'"label":"yes","event_time":"2026-11-24T10:00:00Z"}',
        "missing_field": b'{"schema":"label_event/1","event_id":"b2","model":"fraud",'
                         b'"event_time":"2026-11-24T10:00:00Z"}',
        "unknown_schema": b'{"schema":"label_event/9","event_id":"b3","model":"fraud",'
                          b'"label":1,"event_time":"2026-11-24T10:00:00Z"}',
        "oversize": b'{"pad":"' + b"x" * (MAX_EVENT_BYTES + 10) + b'"}',
    }
    producer = EventProducer(
        settings, "test", extra_config={"message.max.bytes": 2 * MAX_EVENT_BYTES}
    )
    # One partition (same key), valid and bad interleaved.
    sequence: list[tuple[str, object]] = []
    for i, (reason, raw) in enumerate(bad.items()):
        sequence.append(("good", good[i]))
        sequence.append((reason, raw))
    sequence.append(("good", good[5]))
    for kind, item in sequence:
        if kind == "good":
            producer.send(topic, item, key=b"same-key")  # type: ignore[arg-type]
        else:
            producer.send_raw(topic, item, b"same-key", [("origin", b"fuzz")])  # type: ignore[arg-type]
    producer.flush()

    handled: list[str] = []

    def handle(batch: list[Inbound[Any]]) -> None:
        handled.extend(i.event.event_id for i in batch)
        return None

    loop = ConsumerLoop(settings, group_id="dlq-test", topics={topic: LabelEvent},
                        handle_batch=handle, service_name="test", batch_size=3)
    loop.run(until=lambda: len(handled) == len(good) and loop.stats.dead_lettered == len(bad),
             idle_timeout_s=30)
    assert handled == [g.event_id for g in good]
    assert dict(loop.dead_letters.counts) == {reason: 1 for reason in bad}

    letters = _read_raw(settings, settings.topic("deadletter"), len(bad))
    assert len(letters) == len(bad)
    offsets_by_reason = {}
    for letter in letters:
        reason = header_value(letter.headers(), REASON_HEADER)
        if reason == "oversize":
            assert header_value(letter.headers(), "dlq.original.size") == str(len(bad[reason]))
            assert bad[reason].startswith(letter.value())
        else:
            assert letter.value() == bad[reason]
        assert letter.key() == b"same-key"
        assert header_value(letter.headers(), "origin") == "fuzz"
        assert header_value(letter.headers(), SOURCE_TOPIC_HEADER) == topic
        offsets_by_reason[reason] = (
            int(header_value(letter.headers(), SOURCE_PARTITION_HEADER)),
            int(header_value(letter.headers(), SOURCE_OFFSET_HEADER)),
        )
    # The bad messages sat at the odd offsets of one partition, in order.
    partitions = {p for p, _ in offsets_by_reason.values()}
    assert len(partitions) == 1
    assert [offsets_by_reason[r][1] for r in bad] == [1, 3, 5, 7, 9]


def _start_worker(settings: Settings, group: str, out: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), settings.kafka.bootstrap_servers, settings.topics.prefix,
         group, str(out), mode],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_consumer_killed_before_commit_rereads_the_batch(
    settings: Settings, tmp_path: Path
) -> None:
    events = [_label(i) for i in range(20)]
    with EventProducer(settings, "test") as producer:
        for e in events:
            producer.send(settings.topic("labels"), e, key=e.event_id)
    out = tmp_path / "handled.txt"
    crashed = _start_worker(settings, "alo", out, "crash")
    assert crashed.wait(60) == -signal.SIGKILL
    first = out.read_text().split()
    assert first, "the crashing worker handled nothing"

    survivor = _start_worker(settings, "alo", out, "serve")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = out.read_text().split()
        if set(e.event_id for e in events) <= set(seen[len(first):]):
            break
        time.sleep(0.2)
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(30) == 0
    second = out.read_text().split()[len(first):]
    # Nothing was committed before the kill: everything the crashed batch saw comes again.
    assert set(first) <= set(second)
    assert set(second) == {e.event_id for e in events}


def test_sigterm_commits_and_exits_cleanly(settings: Settings, tmp_path: Path) -> None:
    events = [_label(i) for i in range(30)]
    with EventProducer(settings, "test") as producer:
        for e in events:
            producer.send(settings.topic("labels"), e, key=e.event_id)
    out = tmp_path / "handled.txt"
    worker = _start_worker(settings, "term", out, "serve")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if out.exists() and len(out.read_text().split()) >= len(events):
            break
        time.sleep(0.2)
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert "clean-exit consumed=30" in output

    consumer = Consumer(settings.kafka.consumer_config("term"))
    partitions = [TopicPartition(settings.topic("labels"), p) for p in range(3)]
    committed = consumer.committed(partitions, timeout=10)
    consumer.close()
    by_partition = {tp.partition: tp.offset for tp in committed}
    produced = _partition_counts(settings, events)
    assert {p: max(o, 0) for p, o in by_partition.items()} == produced


def _partition_counts(settings: Settings, events: list[LabelEvent]) -> dict[int, int]:
    counts = {p: 0 for p in range(3)}
    for msg in _read_raw(settings, settings.topic("labels"), len(events)):
        counts[msg.partition()] += 1
    return counts


def test_failed_delivery_reaches_the_caller() -> None:
    dead = load_settings(kafka={"bootstrap_servers": "127.0.0.1:9"})
    producer = EventProducer(dead, "test", extra_config={"message.timeout.ms": 1500})
    producer.send("labels", _label(1), key="k")
    with pytest.raises(DeliveryError) as info:
        producer.flush(timeout=10)
    assert info.value.failures or info.value.pending
