"""Events wait for their labels (and labels for their events) in bounded memory (pure).

The online learner needs ``(features, label)`` and the shadow evaluator ``(predictions,
label)``; the two halves arrive on different topics, the label usually much later, and
either may overtake the other. :class:`BoundedJoin` (``put_event``, ``put_label``) holds
each side keyed by the feature event's ``event_id`` until the other arrives:

* events wait at most ``max_entries`` entries and ``ttl`` seconds; beyond either the
  oldest are dropped first and counted (``evicted`` / ``expired``): an event whose label
  never comes simply never joins;
* a label that arrives first waits in its own buffer (``max_early_labels``,
  ``early_label_ttl``), counted as ``early_labels_held`` and, when dropped,
  ``early_labels_evicted`` / ``early_labels_expired``;
* joined ``event_id`` values are remembered (bounded by ``max_entries``), so a redelivered
  event or label (at-least-once delivery) is counted as a ``duplicate`` and ignored.

Time is the caller's (``now``, seconds on any monotonic clock), so the join is
deterministic under test, and the whole object is plain data (it goes into the online
learner's snapshot).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

E = TypeVar("E")  # what an event leaves waiting (features, predictions)
L = TypeVar("L")  # what a label brings


@dataclass(slots=True)
class JoinCounters:
    """What happened to the events and labels that passed through a join."""

    joined: int = 0
    expired: int = 0  # events older than ttl, dropped
    evicted: int = 0  # events dropped because the buffer was full
    early_labels_expired: int = 0
    early_labels_evicted: int = 0
    duplicates: int = 0
    early_labels_held: int = 0


@dataclass
class BoundedJoin(Generic[E, L]):
    """Events waiting for labels and labels waiting for events, both bounded."""

    max_entries: int = 200_000
    ttl: float = 6 * 3600.0
    max_early_labels: int = 200_000
    early_label_ttl: float = 300.0
    counters: JoinCounters = field(default_factory=JoinCounters)

    def __post_init__(self) -> None:
        if self.max_entries < 1 or self.max_early_labels < 0:
            raise ValueError("buffer sizes must be positive")
        if self.ttl <= 0 or self.early_label_ttl < 0:
            raise ValueError("time limits must be positive")
        self._pending: OrderedDict[str, tuple[float, E]] = OrderedDict()
        self._early: OrderedDict[str, tuple[float, L]] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def early_labels(self) -> int:
        """Labels currently waiting for their events."""
        return len(self._early)

    def put_event(self, event_id: str, value: E, now: float) -> tuple[E, L] | None:
        """Hold one event's value; returns ``(value, label)`` if its label came first."""
        self.expire(now)
        if event_id in self._pending or event_id in self._done:
            self.counters.duplicates += 1
            return None
        early = self._early.pop(event_id, None)
        if early is not None:
            self._joined(event_id)
            return value, early[1]
        self._pending[event_id] = (now, value)
        while len(self._pending) > self.max_entries:
            self._pending.popitem(last=False)
            self.counters.evicted += 1
        return None

    def put_label(self, event_id: str, label: L, now: float) -> tuple[E, L] | None:
        """Join a label with its held event, or hold it briefly until the event comes."""
        self.expire(now)
        if event_id in self._done or event_id in self._early:
            self.counters.duplicates += 1
            return None
        held = self._pending.pop(event_id, None)
        if held is not None:
            self._joined(event_id)
            return held[1], label
        if self.max_early_labels == 0:
            self.counters.early_labels_evicted += 1
            return None
        self._early[event_id] = (now, label)
        self.counters.early_labels_held += 1
        while len(self._early) > self.max_early_labels:
            self._early.popitem(last=False)
            self.counters.early_labels_evicted += 1
        return None

    def expire(self, now: float) -> None:
        """Drop events older than ``ttl`` and early labels older than their limit."""
        while self._pending:
            eid, (at, _) = next(iter(self._pending.items()))
            if now - at <= self.ttl:
                break
            del self._pending[eid]
            self.counters.expired += 1
        while self._early:
            eid, (at, _) = next(iter(self._early.items()))
            if now - at <= self.early_label_ttl:
                break
            del self._early[eid]
            self.counters.early_labels_expired += 1

    def waiting(self) -> Iterator[E]:
        """The values of the events still waiting, oldest first (they may be changed)."""
        return (value for _, value in self._pending.values())

    def discard_waiting(self, drop: Callable[[E], bool] = lambda _: True) -> int:
        """Forget the waiting events whose value ``drop`` selects (all by default)."""
        doomed = [eid for eid, (_, value) in self._pending.items() if drop(value)]
        for eid in doomed:
            del self._pending[eid]
        return len(doomed)

    def _joined(self, event_id: str) -> None:
        self._done[event_id] = None
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)
        self.counters.joined += 1
