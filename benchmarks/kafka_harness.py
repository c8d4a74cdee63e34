"""Shared pieces of the through-the-broker benchmarks: a broker, bulk producing, baselines.

The baseline every streaming benchmark compares against is the fastest loop that
consumes the same messages (``consume(num_messages=10000)``), decodes each into its
typed struct with msgspec and builds the numpy feature matrix, with nothing else.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
from confluent_kafka import Consumer, Producer

from streams.admin import create_topics
from streams.broker import EmbeddedBroker, free_port
from streams.contracts import FeatureEvent
from streams.settings import Settings, load_settings


@contextlib.contextmanager
def embedded_broker(partitions: int = 3) -> Iterator[Settings]:
    """A fresh embedded broker with every topic created; yields settings for it."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        broker = EmbeddedBroker(Path(tmp), port=port)
        broker.start()
        try:
            settings = load_settings(
                kafka={"bootstrap_servers": broker.address},
                topics={"prefix": f"b{uuid.uuid4().hex[:6]}.", "partitions": partitions},
                state_dir=Path(tmp) / "state",
                registry_uri=str(Path(tmp) / "registry"),
            )
            create_topics(settings)
            yield settings
        finally:
            broker.stop()


def numeric_feature_names(n_features: int) -> list[str]:
    return [f"f{i:02d}" for i in range(n_features)]


def feature_payloads(
    n_events: int, n_features: int, *, model: str = "bench", seed: int = 0,
    shift: float = 0.0, start: datetime | None = None, events_per_second: float = 1000.0,
) -> list[bytes]:
    """Encoded ``feature_event/1`` messages of standard-normal features (+ ``shift``)."""
    rng = np.random.default_rng(seed)
    names = numeric_feature_names(n_features)
    values = rng.standard_normal((n_events, n_features)) + shift
    t0 = start or datetime(2026, 11, 1, tzinfo=UTC)
    encoder = msgspec.json.Encoder()
    payloads = []
    for i in range(n_events):
        event = FeatureEvent(
            event_id=uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i).hex, model=model,
            entity_id=f"card-{i % 5000}",
            event_time=t0 + timedelta(seconds=i / events_per_second),
            features=dict(zip(names, values[i].round(6).tolist(), strict=True)),
        )
        payloads.append(encoder.encode(event))
    return payloads


def produce_payloads(settings: Settings, topic: str, payloads: list[bytes]) -> float:
    """Produce raw payloads as fast as possible; returns seconds taken."""
    producer = Producer({**settings.kafka.producer_config(), "linger.ms": 20,
                         "batch.num.messages": 10000, "queue.buffering.max.messages": 500000})
    started = time.perf_counter()
    for i, payload in enumerate(payloads):
        while True:
            try:
                producer.produce(topic, payload, key=str(i % 997).encode())
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} messages not acknowledged")
    return time.perf_counter() - started


def baseline_consume_decode(
    settings: Settings, topic: str, n_events: int, n_features: int, timeout_s: float = 300.0,
) -> dict[str, float]:
    """The fastest consume + typed decode + matrix loop over ``n_events``; events/s."""
    names = numeric_feature_names(n_features)
    decoder = msgspec.json.Decoder(FeatureEvent)
    consumer = Consumer(settings.kafka.consumer_config(f"baseline-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    seen = 0
    started = None
    deadline = time.monotonic() + timeout_s
    while seen < n_events and time.monotonic() < deadline:
        messages = consumer.consume(num_messages=10000, timeout=0.5)
        if not messages:
            continue
        if started is None:
            started = time.perf_counter()
        events = [decoder.decode(m.value()) for m in messages if m.error() is None]
        matrix = np.array([[e.features.get(n) for n in names] for e in events], dtype=float)
        seen += matrix.shape[0]
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return {"events": seen, "seconds": elapsed, "events_per_s": seen / elapsed if elapsed else 0.0}
