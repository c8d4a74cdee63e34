"""``driftloop demo roundtrip`` runs on topics of its own and leaves the configured ones alone."""

from __future__ import annotations

import time

import pytest

from services.demo.roundtrip import run_private_round_trip
from streams.admin import list_topics
from streams.settings import Settings
from streams.tail import TopicTail

pytestmark = pytest.mark.integration


def count_messages(settings: Settings, topics: list[str], idle_s: float = 3.0) -> int:
    """Messages on ``topics`` read from the beginning until ``idle_s`` pass without one
    (every topic must exist)."""
    with TopicTail(settings, dict.fromkeys(topics), name="count") as tail:
        assert tail.missing == []
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            if tail.poll(timeout=0.5):
                last = time.monotonic()
    return tail.messages


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
