"""Replay generated live events into Kafka: features at once, labels after their delay.

Each label is sent once the replay's event-time clock (the newest feature event sent)
passes the label's own time, so labels trail their features as they would in
production; the rest are sent at the end. A pair without a label (``None``) sends its
features only. ``rate`` paces the sends in wall-clock
events per second (0 = as fast as possible).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from streams.contracts import FeatureEvent, LabelEvent
from streams.producer import EventProducer
from streams.settings import Settings


@dataclass(slots=True)
class ReplayStats:
    """What a replay sent."""

    features: int = 0
    labels: int = 0
    seconds: float = 0.0


def replay(
    producer: EventProducer,
    settings: Settings,
    pairs: Iterable[tuple[FeatureEvent, LabelEvent | None]],
    *,
    rate: float = 0.0,
    on_progress: Callable[[int], None] | None = None,
    flush_every: int = 50_000,
) -> ReplayStats:
    """Send every pair's feature event, then its label when due; flush at the end."""
    features_topic = settings.topic("features")
    labels_topic = settings.topic("labels")
    waiting: list[tuple[object, int, LabelEvent, str]] = []
    stats = ReplayStats()
    started = time.perf_counter()
    for i, (feature, label) in enumerate(pairs):
        if rate > 0:
            lag = started + i / rate - time.perf_counter()
            if lag > 0:
                time.sleep(lag)
        producer.send(features_topic, feature, feature.entity_id, span=False)
        stats.features += 1
        if label is not None:
            heapq.heappush(waiting, (label.event_time, i, label, feature.entity_id))
        while waiting and waiting[0][0] <= feature.event_time:  # type: ignore[operator]
            _, _, due, key = heapq.heappop(waiting)
            producer.send(labels_topic, due, key, span=False)
            stats.labels += 1
        if on_progress is not None:
            on_progress(1)
        if stats.features % flush_every == 0:
            producer.flush()
    while waiting:
        _, _, due, key = heapq.heappop(waiting)
        producer.send(labels_topic, due, key, span=False)
        stats.labels += 1
    producer.flush()
    stats.seconds = time.perf_counter() - started
    return stats
