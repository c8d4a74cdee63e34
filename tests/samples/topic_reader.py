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
