"""Reads the control topics in full, without a consumer group, into an episode book.

Every instance of a service needs every request, episode event and verdict of every
model, whatever partitions of its own input it owns; these topics are small.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from services.episodes.book import EpisodeBook
from streams.codec import DecodeFailure, decode
from streams.contracts import (
    EpisodeEvent,
    ModelCandidate,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
)
from streams.settings import Settings

log = logging.getLogger(__name__)

CONTROL_TOPICS: dict[str, type] = {
    "retrain.requests": RetrainRequest,
    "retrain.episodes": EpisodeEvent,
    "models.candidates": ModelCandidate,
    "models.verdicts": ShadowVerdict,
    "models.promotions": ModelPromotion,
}


class ControlReader:
    """Assigns every partition of the control topics from the start; :meth:`drain`
    returns what arrived since the last call and folds it into :attr:`book`."""

    def __init__(self, settings: Settings, *, topics: Sequence[str] = tuple(CONTROL_TOPICS),
                 book: EpisodeBook | None = None, name: str = "control") -> None:
        self._types = {settings.topic(t): CONTROL_TOPICS[t] for t in topics}
        self._settings = settings
        self._name = name
        self._consumer: Consumer | None = None
        self.book = book or EpisodeBook()

    def _open(self) -> Consumer:
        config = self._settings.kafka.consumer_config(
            f"driftloop-{self._name}-{uuid.uuid4()}")
        consumer = Consumer(config)
        metadata = consumer.list_topics(timeout=10)
        consumer.assign([
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in self._types
            if topic in metadata.topics
            for p in metadata.topics[topic].partitions
        ])
        return consumer

    def drain(self) -> list[Any]:
        """Events that arrived since the last call (the first call waits up to a second
        to catch up with the history; later calls do not block)."""
        timeout = 0.0
        if self._consumer is None:
            self._consumer = self._open()
            timeout = 1.0
        events: list[Any] = []
        while True:
            messages = self._consumer.consume(num_messages=1000, timeout=timeout)
            if not messages:
                break
            for msg in messages:
                if msg.error() is not None:
                    continue
                try:
                    events.append(decode(msg.value(), self._types[msg.topic()]))
                except DecodeFailure:
                    continue  # these topics' own consumers dead-letter such messages
        self.book.fold_all(events)
        return events

    def close(self) -> None:
        """Leave (no offsets are committed: the next start reads from the beginning)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
