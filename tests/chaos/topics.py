"""Reading a test's topics back in full, and producing paced streams, for the chaos checks."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streams.codec import DecodeFailure, decode
from streams.contracts import Event
from streams.producer import EventProducer
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class Record:
    """One message read back: where it is, its headers, and its event (None: undecodable)."""

    partition: int
    offset: int
    value: bytes | None
    headers: dict[str, bytes]
    event: Any
    timestamp: float = 0.0
    """When the producer created it (seconds since the epoch)."""


def read_all(settings: Settings, topic: str, event_type: type[Event] | None = None, *,
             quiet_s: float = 1.5, timeout_s: float = 30.0) -> list[Record]:
    """Every message of ``topic`` from the start (until nothing new for ``quiet_s``).

    The embedded broker's high watermarks are wrong, so "all" means "quiet for a while".
    """
    consumer = Consumer(settings.kafka.consumer_config(f"reader-{uuid.uuid4().hex[:10]}"))
    consumer.subscribe([settings.topic(topic)])
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    assigned = False
    try:
        while time.monotonic() < deadline:
            got = [m for m in consumer.consume(1000, timeout=0.3) if m.error() is None]
            now = time.monotonic()
            if not assigned and consumer.assignment():
                assigned, last = True, now  # quiet is counted from the assignment on
            if got:
                last = now
            elif assigned and now - last > quiet_s:
                break
            for m in got:
                event = None
                if event_type is not None:
                    try:
                        event = decode(m.value(), event_type)
                    except DecodeFailure:
                        event = None
                out.append(Record(m.partition(), m.offset(), m.value(),
                                  {k: v for k, v in (m.headers() or [])}, event,
                                  m.timestamp()[1] / 1000.0))
    finally:
        consumer.close()
    return out


def paced_producer(settings: Settings, topic: str, events: Sequence[Event],
                   key: Callable[[Event], str], rate_per_s: float,
                   extra: Callable[[int, EventProducer], None] | None = None,
                   ) -> tuple[threading.Thread, threading.Event]:
    """A thread sending ``events`` at ``rate_per_s`` (flushed every 50); set when done."""
    done = threading.Event()

    def run() -> None:
        started = time.monotonic()
        with EventProducer(settings, "chaos-source") as producer:
            for i, event in enumerate(events):
                producer.send(settings.topic(topic), event, key=key(event), span=False)
                if extra is not None:
                    extra(i, producer)
                if i % 50 == 49:
                    producer.flush()
                    time.sleep(max(0.0, started + (i + 1) / rate_per_s - time.monotonic()))
        done.set()

    thread = threading.Thread(target=run, name="chaos-source", daemon=True)
    thread.start()
    return thread, done


def committed(settings: Settings, group_id: str, topics: Sequence[str],
              ) -> dict[tuple[str, int], int]:
    """The offsets ``group_id`` committed on ``topics`` (unprefixed names), per (topic,
    partition); -1 where nothing was committed. Asked through the admin API: a consumer
    carrying the group's id, even one that never subscribes, disturbed the live group on
    the embedded broker (its members stopped making progress)."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka.client_config())
    wanted = [TopicPartition(settings.topic(t), p) for t in topics
              for p in range(settings.topics.partitions)]
    future = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group_id, wanted)], request_timeout=15)[group_id]
    got = future.result(timeout=20).topic_partitions
    return {(tp.topic, tp.partition): tp.offset for tp in got}
