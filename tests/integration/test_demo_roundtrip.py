"""``driftloop demo roundtrip`` runs on topics of its own and leaves the configured ones alone."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from services.demo.roundtrip import run_private_round_trip
from streams.admin import list_topics
from streams.settings import Settings

pytestmark = pytest.mark.integration


def count_messages(settings: Settings, topics: list[str], idle_s: float = 3.0) -> int:
    """Messages on ``topics`` read from the beginning until ``idle_s`` pass without one."""
    consumer = Consumer(settings.kafka.consumer_config(f"{settings.topics.prefix}count"))
    partitions = list_topics(settings)
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(partitions[t])])
    seen, last = 0, time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            batch = consumer.consume(num_messages=500, timeout=0.5)
            got = [m for m in batch if m.error() is None]
            if got:
                seen, last = seen + len(got), time.monotonic()
    finally:
        consumer.close()
    return seen


def test_the_round_trip_uses_its_own_topics_and_deletes_them(settings: Settings) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    with trace.use_span(tracer.start_span("test-root"), end_on_exit=True):
        trip = run_private_round_trip(settings, timeout_s=60)
    assert trip.result.ok
    private = trip.settings.topics.prefix
    assert private.startswith(f"{settings.topics.prefix}roundtrip-") and private.endswith(".")
    assert trip.deleted == {t: "deleted" for t in trip.settings.all_topics()}
    remaining = [t for t in list_topics(settings) if t.startswith(private)]
    assert remaining == []
    assert count_messages(settings, settings.all_topics()) == 0
