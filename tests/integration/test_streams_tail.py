"""TopicTail over the embedded broker: whole topics from the start, topics that appear
later, and messages that are not events."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from streams.admin import create_topics
from streams.contracts import LabelEvent
from streams.producer import EventProducer
from streams.settings import Settings
from streams.tail import TopicTail

pytestmark = pytest.mark.integration


def _label(event_id: str) -> LabelEvent:
    return LabelEvent(event_id=event_id, model="m", label=1.0,
                      event_time=datetime(2026, 1, 1, tzinfo=UTC))


def _send(settings: Settings, topic: str, ids: list[str]) -> None:
    with EventProducer(settings, "test") as producer:
        for event_id in ids:
            producer.send(topic, _label(event_id), key=event_id)


def _drain_until(tail: TopicTail, count: int, timeout_s: float = 20.0) -> list[LabelEvent]:
    got: list[LabelEvent] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += tail.drain(timeout=0.5)
    return got


def test_every_partition_is_read_from_the_start_then_only_what_is_new(
    settings: Settings,
) -> None:
    # Bugs caught: assigning some partitions only, starting anywhere but the beginning
    # (events sent before the tail existed), a drain that returns old events again,
    # and a record without its headers (the demo takes the trace id from them).
    topic = settings.topic("labels")
    before = [f"before-{i}" for i in range(30)]
    _send(settings, topic, before)
    with TopicTail(settings, {topic: LabelEvent}, name="test") as tail:
        records: list = []
        deadline = time.monotonic() + 20
        while len(records) < len(before) and time.monotonic() < deadline:
            records += tail.drain_records(timeout=0.5)
        assert sorted(r.event.event_id for r in records) == sorted(before)
        assert {r.partition for r in records} == {0, 1, 2}
        assert all(dict(r.headers).get("event_id") == r.event.event_id.encode()
                   for r in records)
        _send(settings, topic, ["after"])
        assert [e.event_id for e in _drain_until(tail, 1)] == ["after"]
        assert tail.drain(timeout=1.0) == []
        assert (tail.undecodable, tail.errors) == (0, 0)


def test_a_topic_created_after_the_first_drain_is_read_from_its_start(
    settings: Settings,
) -> None:
    # Bug caught: the control reader's old copy skipped a topic missing at its first
    # drain and never assigned it, so a service started before the topic was created
    # never saw what was sent to it (the demo's and the benchmark's copies raised
    # KeyError instead).
    late = f"{settings.topics.prefix}late"
    labels = settings.topic("labels")
    with TopicTail(settings, {labels: LabelEvent, late: LabelEvent}, name="test",
                   recheck_s=0.2) as tail:
        assert tail.missing == [late]
        assert tail.drain(timeout=0.5) == []
        create_topics(settings, topics=[late])
        _send(settings, late, ["late-1", "late-2"])
        got = _drain_until(tail, 2)
        assert sorted(e.event_id for e in got) == ["late-1", "late-2"]
        assert tail.missing == []


def test_an_undecodable_message_is_counted_not_raised(settings: Settings) -> None:
    # Bug caught: a reader that raises on a message that is not an event (the demo's
    # watcher and the benchmarks would stop), or that drops it without a count (the
    # report would not say that messages were skipped).
    topic = settings.topic("labels")
    raw = Producer(settings.kafka.producer_config())
    raw.produce(topic, value=b"{not json", key=b"x")
    raw.produce(topic, value=b"", key=b"y")
    assert raw.flush(10) == 0
    _send(settings, topic, ["good"])
    with TopicTail(settings, {topic: LabelEvent}, name="test") as tail:
        got = _drain_until(tail, 1)
        deadline = time.monotonic() + 10
        while tail.messages < 3 and time.monotonic() < deadline:
            got += tail.drain(timeout=0.5)
        assert [e.event_id for e in got] == ["good"]
        assert (tail.messages, tail.undecodable, tail.errors) == (3, 2, 0)
