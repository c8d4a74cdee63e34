"""A member that leaves during its join must not leave its group without partitions.

Reproduced on the embedded broker: a consumer that subscribes and closes (a clean
LeaveGroup) while its JoinGroup is still pending leaves the group stuck, and every later
member joins without ever getting a partition. A member killed during its join does not
(its session expires). The loop therefore never leaves mid-join (streams/consumer.py).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer

from streams.consumer import ConsumerLoop, Inbound
from streams.contracts import LabelEvent
from streams.producer import EventProducer
from streams.settings import Settings

pytestmark = pytest.mark.integration


def _assigned_within(settings: Settings, group: str, topic: str, seconds: float) -> bool:
    got: list[int] = []
    consumer = Consumer(settings.kafka.consumer_config(group))
    consumer.subscribe([topic], on_assign=lambda c, parts: got.append(len(parts)))
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not any(got):
            consumer.poll(0.2)
    finally:
        consumer.close()
    return any(got)


@pytest.mark.timeout(60)
def test_a_member_leaving_during_its_join_strands_the_group(settings: Settings) -> None:
    """The broker behaviour the loop defends against (plain clients, no driftloop code)."""
    topic = settings.topic("labels")
    group = f"{settings.topics.prefix}strand-{uuid.uuid4().hex[:6]}"
    leaver = Consumer(settings.kafka.consumer_config(group))
    leaver.subscribe([topic])
    leaver.poll(0.5)  # the join is pending (the broker holds joins for session/2 = 3 s)
    leaver.close()
    # Twice the session timeout: a dead member would have expired by then.
    assert not _assigned_within(settings, group, topic, 2 * 6 + 2)


@pytest.mark.timeout(60)
def test_a_loop_failing_at_start_up_leaves_a_group_the_next_member_can_use(
    settings: Settings,
) -> None:
    topic = settings.topic("labels")
    group = f"{settings.topics.prefix}startup-{uuid.uuid4().hex[:6]}"

    def broken(batch: list[Inbound[Any]]) -> None:
        raise RuntimeError("feature store unreachable at start-up")

    first = ConsumerLoop(settings, group_id=group, topics={topic: LabelEvent},
                         handle_batch=broken, service_name="first")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="unreachable"):
        first.run()  # the first tick raises about 0.2 s after subscribing: mid-join
    assert time.monotonic() - started < 6 + 2  # the wait before leaving is bounded

    producer = EventProducer(settings, "test")
    producer.send(topic, LabelEvent(event_id="after", model="fraud", label=1.0,
                                    event_time=datetime(2026, 11, 24, tzinfo=UTC)), key="k")
    producer.flush()
    handled: list[str] = []

    def handle(batch: list[Inbound[Any]]) -> None:
        handled.extend(i.event.event_id for i in batch)

    second = ConsumerLoop(settings, group_id=group, topics={topic: LabelEvent},
                          handle_batch=handle, service_name="second")
    second.run(until=lambda: bool(handled), idle_timeout_s=20)
    assert handled == ["after"]
    assert second.join_stalled_s is None
