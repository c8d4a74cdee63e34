"""Reads the control topics in full, without a consumer group, into an episode book.

Every instance of a service needs every request, episode event and verdict of every
model, whatever partitions of its own input it owns; these topics are small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.episodes.book import EpisodeBook
from streams.contracts import (
    EpisodeEvent,
    ModelCandidate,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
)
from streams.settings import Settings
from streams.tail import TopicTail

CONTROL_TOPICS: dict[str, type] = {
    "retrain.requests": RetrainRequest,
    "retrain.episodes": EpisodeEvent,
    "models.candidates": ModelCandidate,
    "models.verdicts": ShadowVerdict,
    "models.promotions": ModelPromotion,
}


class ControlReader:
    """Every partition of the control topics from the start (a
    :class:`~streams.tail.TopicTail`, whose rules hold: a control topic created later
    is read once it exists; undecodable messages are skipped, their own consumers
    dead-letter them); :meth:`drain` returns what arrived since the last call and folds
    it into :attr:`book`."""

    def __init__(self, settings: Settings, *, topics: Sequence[str] = tuple(CONTROL_TOPICS),
                 book: EpisodeBook | None = None, name: str = "control") -> None:
        self._types = {settings.topic(t): CONTROL_TOPICS[t] for t in topics}
        self._settings = settings
        self._name = name
        self._tail: TopicTail | None = None
        self.book = book or EpisodeBook()

    def drain(self) -> list[Any]:
        """Events that arrived since the last call (the first call connects and reads
        until a second passes without a message, to catch up with the history; later
        calls do not block)."""
        timeout = 0.0
        if self._tail is None:
            self._tail = TopicTail(self._settings, self._types, name=self._name)
            timeout = 1.0
        events = self._tail.drain(timeout)
        self.book.fold_all(events)
        return events

    def close(self) -> None:
        """Close the reader (nothing is committed: the next start reads from the beginning)."""
        if self._tail is not None:
            self._tail.close()
            self._tail = None
