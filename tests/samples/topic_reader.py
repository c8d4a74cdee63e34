"""Read one topic back after a service ran: everything until ``min_count`` events and a
quiet moment, or the timeout."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer

from streams.codec import decode
from streams.settings import Settings


def read_events(settings: Settings, topic: str, event_type: type, min_count: int,
                timeout: float = 20) -> list[Any]:
    """The decoded events of ``topic`` (a fresh group, from the start)."""
    consumer = Consumer(settings.kafka.consumer_config(f"r-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic(topic)])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    quiet_until = None
    while time.monotonic() < deadline:
        got = [m for m in consumer.consume(500, timeout=0.5) if m.error() is None]
        out += [decode(m.value(), event_type) for m in got]
        if len(out) >= min_count:
            quiet_until = quiet_until or time.monotonic() + 1.5
            if time.monotonic() > quiet_until:
                break
    consumer.close()
    return out


def read_control(settings: Settings) -> tuple[list[Any], list[Any]]:
    """Every ``retrain.requests`` and ``retrain.episodes`` event (all partitions, from the
    start, read until 2 s pass without a new one): ``(requests, episode events)``."""
    from services.episodes.reader import ControlReader
    from streams.contracts import EpisodeEvent, RetrainRequest

    reader = ControlReader(settings, topics=("retrain.requests", "retrain.episodes"),
                           name="test")
    events: list[Any] = []
    quiet_since = time.monotonic()
    try:
        while time.monotonic() - quiet_since < 2.0:
            got = reader.drain()
            events += got
            if got:
                quiet_since = time.monotonic()
            time.sleep(0.1)
    finally:
        reader.close()
    return ([e for e in events if isinstance(e, RetrainRequest)],
            [e for e in events if isinstance(e, EpisodeEvent)])
