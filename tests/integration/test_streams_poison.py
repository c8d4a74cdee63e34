"""Poison messages over the real broker: handled or dead-lettered, and the loop lives."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.consumer import ConsumerLoop, HandlerBroken, Inbound
from streams.contracts import LabelEvent
from streams.deadletter import (
    DETAIL_HEADER,
    REASON_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
)
from streams.producer import EventProducer
from streams.settings import Settings
from streams.tracing import header_value

pytestmark = pytest.mark.integration


def _label(event_id: str, label: float = 1.0) -> LabelEvent:
    return LabelEvent(event_id=event_id, model="fraud", label=label,
                      event_time=datetime(2026, 11, 24, tzinfo=UTC))


def _dead_letters(
    settings: Settings, count: int, timeout: float = 20
) -> dict[int, tuple[str, str, int]]:
    """source offset -> (reason, detail, partition), read from the dead-letter topic."""
    consumer = Consumer(settings.kafka.consumer_config(f"raw-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic("deadletter")])
    got: dict[int, tuple[str, str]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            for m in consumer.consume(100, timeout=0.5):
                if m.error() is None:
                    h = m.headers()
                    got[int(header_value(h, SOURCE_OFFSET_HEADER))] = (
                        header_value(h, REASON_HEADER), header_value(h, DETAIL_HEADER),
                        int(header_value(h, SOURCE_PARTITION_HEADER)))
    finally:
        consumer.close()
    return got


def _committed(settings: Settings, group: str, topic: str, partition: int) -> int:
    consumer = Consumer(settings.kafka.consumer_config(group))
    try:
        (tp,) = consumer.committed([TopicPartition(topic, partition)], timeout=10)
    finally:
        consumer.close()
    return tp.offset


def test_a_message_the_handler_keeps_failing_on_is_dead_lettered_alone(
    settings: Settings,
) -> None:
    topic = settings.topic("labels")
    producer = EventProducer(settings, "test")
    ids = [f"e{i}" for i in range(12)]
    poison = {"e3", "e8"}
    for event_id in ids:
        producer.send(topic, _label(event_id), key=b"one")
    # Out of range at the edge, and nested too deep in an ignored field.
    producer.send_raw(topic, b'{"schema":"label_event/1","event_id":"far","model":"fraud",'
                      b'"label":1,"event_time":"2300-01-01T00:00:00Z"}', b"one", [])
    producer.send_raw(topic, b'{"schema":"label_event/1","event_id":"deep","model":"fraud",'
                      b'"label":1,"event_time":"2026-11-24T10:00:00Z","x":'
                      + b"[" * 1000 + b"]" * 1000 + b"}", b"one", [])
    producer.flush()
    calls: dict[str, int] = {}
    handled: list[str] = []

    def handle(batch: list[Inbound[Any]]) -> None:
        for inbound in batch:
            calls[inbound.event.event_id] = calls.get(inbound.event.event_id, 0) + 1
            if inbound.event.event_id in poison:
                raise ValueError(f"cannot learn {inbound.event.event_id}")
        handled.extend(i.event.event_id for i in batch)

    group = f"{settings.topics.prefix}poison"
    loop = ConsumerLoop(settings, group_id=group, topics={topic: LabelEvent},
                        handle_batch=handle, service_name="test", batch_size=100)
    loop.run(until=lambda: loop.stats.dead_lettered >= 4, idle_timeout_s=30)

    letters = _dead_letters(settings, 4)
    assert {o: r for o, (r, _, _) in letters.items()} == {
        3: "handler_error", 8: "handler_error", 12: "invalid_value", 13: "too_deep"}
    assert letters[3][1] == "ValueError: cannot learn e3"
    assert letters[12][1].startswith("event_time: 2300-01-01")
    # Every good message handled (retries may repeat some), each poison one tried 3 times alone.
    assert set(handled) == set(ids) - poison
    assert calls["e3"] >= 3 and calls["e8"] >= 3
    (partition,) = {p for _, _, p in letters.values()}
    assert _committed(settings, group, topic, partition) == 14


def test_a_handler_that_fails_for_every_message_stops_the_loop(settings: Settings) -> None:
    topic = settings.topic("labels")
    producer = EventProducer(settings, "test")
    for i in range(30):
        producer.send(topic, _label(f"e{i}"), key=b"one")
    producer.flush()

    def handle(batch: list[Inbound[Any]]) -> None:
        if batch:
            raise ConnectionError("feature store unreachable")

    group = f"{settings.topics.prefix}broken"
    loop = ConsumerLoop(settings, group_id=group, topics={topic: LabelEvent},
                        handle_batch=handle, service_name="test", batch_size=100)
    with pytest.raises(HandlerBroken, match="20 messages in a row"):
        loop.run(idle_timeout_s=30)
    assert loop.stats.handler_errors == 19  # the 20th stops the loop instead
    (partition,) = {p for _, _, p in _dead_letters(settings, 19).values()}
    assert _committed(settings, group, topic, partition) < 0  # a restart re-reads them
