"""Join feature events with their labels by ``event_id``, in bounded memory (pure).

The online learner needs ``(features, label)``; the two arrive on different topics, the
label usually much later. Features wait here up to ``max_entries`` events and ``ttl``
seconds (oldest dropped first, counted); a label that arrives before its features waits
in its own buffer (``max_early_labels``, ``early_label_ttl``): as large as the feature
buffer, because replaying a backlog may read the labels topic far ahead of the
features topic (a label entry is about 300 bytes). Joined ``event_id``
values are remembered (bounded) so a redelivered event is not learned twice.
Time is the caller's (``now``, seconds), so the join is deterministic under test; the
whole object is plain data and goes into the online service's snapshot.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Joined:
    """A labelled event ready to learn."""

    event_id: str
    model: str
    features: dict[str, Any]
    label: float
    label_time: datetime


@dataclass(slots=True)
class JoinCounters:
    """What happened to events passing through the join."""

    joined: int = 0
    expired: int = 0
    evicted: int = 0
    early_labels_expired: int = 0
    early_labels_evicted: int = 0
    duplicates: int = 0


@dataclass
class LabelJoin:
    """Features waiting for labels and labels waiting for features, both bounded."""

    max_entries: int = 200_000
    ttl: float = 6 * 3600.0
    max_early_labels: int = 200_000
    early_label_ttl: float = 300.0
    counters: JoinCounters = field(default_factory=JoinCounters)

    def __post_init__(self) -> None:
        self._features: OrderedDict[str, tuple[float, str, dict[str, Any]]] = OrderedDict()
        self._early: OrderedDict[str, tuple[float, str, float, datetime]] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._features)

    def add_features(
        self, event_id: str, model: str, features: dict[str, Any], now: float
    ) -> Joined | None:
        """Hold one event's features; returns the joined event if its label came first."""
        self.expire(now)
        if event_id in self._features or event_id in self._done:
            self.counters.duplicates += 1
            return None
        early = self._early.pop(event_id, None)
        if early is not None:
            return self._join(event_id, model, features, early[2], early[3])
        self._features[event_id] = (now, model, features)
        while len(self._features) > self.max_entries:
            self._features.popitem(last=False)
            self.counters.evicted += 1
        return None

    def add_label(
        self, event_id: str, model: str, label: float, label_time: datetime, now: float
    ) -> Joined | None:
        """Join a label with its held features, or hold it briefly until they come."""
        self.expire(now)
        if event_id in self._done or event_id in self._early:
            self.counters.duplicates += 1
            return None
        held = self._features.pop(event_id, None)
        if held is not None:
            return self._join(event_id, held[1], held[2], label, label_time)
        self._early[event_id] = (now, model, label, label_time)
        while len(self._early) > self.max_early_labels:
            self._early.popitem(last=False)
            self.counters.early_labels_evicted += 1
        return None

    def expire(self, now: float) -> None:
        """Drop features older than ``ttl`` and early labels older than their limit."""
        while self._features:
            eid, (at, _, _) = next(iter(self._features.items()))
            if now - at <= self.ttl:
                break
            del self._features[eid]
            self.counters.expired += 1
        while self._early:
            eid, (at, *_) = next(iter(self._early.items()))
            if now - at <= self.early_label_ttl:
                break
            del self._early[eid]
            self.counters.early_labels_expired += 1

    def _join(
        self, event_id: str, model: str, features: dict[str, Any], label: float, at: datetime
    ) -> Joined:
        self._done[event_id] = None
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)
        self.counters.joined += 1
        return Joined(event_id, model, features, label, at)
