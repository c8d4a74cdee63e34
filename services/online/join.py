"""Join feature events with their labels by ``event_id``, in bounded memory (pure).

The online learner needs ``(features, label)``; the two arrive on different topics, the
label usually much later. The bounds and the handling of early, late and duplicate
labels are :class:`services.labeljoin.BoundedJoin`'s (shared with the shadow
evaluator's pairing); here features wait up to ``max_entries`` events and ``ttl``
seconds, and early labels are held as many as features, because replaying a backlog
may read the labels topic far ahead of the features topic (a label entry is about 300
bytes). The features' event time is held with them (where a change began is mapped to
it). The whole object goes into the online service's snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.labeljoin import BoundedJoin


@dataclass(frozen=True, slots=True)
class Joined:
    """A labelled event ready to learn."""

    event_id: str
    model: str
    features: dict[str, Any]
    label: float
    label_time: datetime
    feature_time: datetime

    @property
    def event_time(self) -> datetime:
        """When the event happened: its features' time."""
        return self.feature_time


@dataclass
class LabelJoin(BoundedJoin[tuple[Any, ...], tuple[float, datetime]]):
    """Features waiting for labels and labels waiting for features, both bounded.

    Held features are ``(model, features, event_time)``.
    """

    def add_features(
        self, event_id: str, model: str, features: dict[str, Any], now: float,
        event_time: datetime,
    ) -> Joined | None:
        """Hold one event's features; returns the joined event if its label came first."""
        held = (model, features, event_time)
        return self._as_joined(event_id, self.put_event(event_id, held, now))

    def add_label(
        self, event_id: str, model: str, label: float, label_time: datetime, now: float
    ) -> Joined | None:
        """Join a label with its held features, or hold it briefly until they come."""
        return self._as_joined(event_id, self.put_label(event_id, (label, label_time), now))

    @staticmethod
    def _as_joined(
        event_id: str, pair: tuple[tuple[Any, ...], tuple[float, datetime]] | None
    ) -> Joined | None:
        if pair is None:
            return None
        (model, features, feature_time), (label, label_time) = pair
        return Joined(event_id, model, features, label, label_time, feature_time)
