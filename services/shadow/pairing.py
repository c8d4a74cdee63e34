"""Pair shadow predictions with their labels, per feature event, in a bounded buffer.

The shadow evaluator scores every feature event with the champion and each candidate
and keeps the predicted probabilities here, keyed by the feature event's ``event_id``,
until the label with the same ``event_id`` arrives. Then it yields the per-event log
losses of the champion and of each candidate: one *paired* observation per candidate.

Bounds (nothing grows without limit on a stream):

* Predictions wait at most ``max_entries`` events and ``ttl`` seconds. Beyond either,
  the oldest are dropped first and counted (``expired`` / ``evicted``): an event whose
  label never comes simply never counts, for champion and candidate alike, so dropping it
  does not bias the comparison.
* Labels may overtake their predictions (two topics, independent partitions and lags).
  Such *early* labels are held too, in a separate, smaller buffer (``max_early_labels``,
  ``early_label_ttl``); the prediction that arrives within that time completes the pair.
  Labels that wait longer are dropped and counted (``early_labels_expired``).
* ``event_id`` values already paired are remembered (bounded, ``max_entries``), so a
  re-delivered label or prediction (at-least-once delivery) is ignored instead of
  counted twice.

Time is passed in by the caller (``now``, seconds on any monotonic clock), so the
buffer is pure and deterministic under test. Log losses use probabilities clipped to
``[eps, 1 - eps]`` so one confident mistake costs at most ``-log(eps)``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_EPS = 1e-7


def log_loss(label: float, proba: float, eps: float = DEFAULT_EPS) -> float:
    """Binary log loss of P(label == 1) = ``proba``, probability clipped to [eps, 1 - eps]."""
    p = min(max(proba, eps), 1.0 - eps)
    if label == 1.0:
        return -math.log(p)
    if label == 0.0:
        return -math.log1p(-p)
    raise ValueError(f"binary label expected (0 or 1), got {label!r}")


@dataclass(frozen=True, slots=True)
class Pair:
    """The losses of one labelled event: the champion's and each candidate's."""

    event_id: str
    label: float
    champion_loss: float
    candidate_losses: Mapping[int, float]  # candidate version -> loss


@dataclass(slots=True)
class _Pending:
    at: float
    champion: float
    candidates: dict[int, float]


@dataclass(slots=True)
class PairingCounters:
    """What happened to the events that passed through the buffer."""

    paired: int = 0
    expired: int = 0  # predictions older than ttl, dropped
    evicted: int = 0  # predictions dropped because the buffer was full
    early_labels_held: int = 0
    early_labels_expired: int = 0
    early_labels_evicted: int = 0
    duplicates: int = 0
    invalid_labels: int = 0
    discarded: int = 0  # predictions dropped because the champion changed


@dataclass
class PairingBuffer:
    """Bounded buffer of predictions awaiting labels (and of labels awaiting predictions)."""

    max_entries: int = 200_000
    ttl: float = 6 * 3600.0
    max_early_labels: int = 20_000
    early_label_ttl: float = 300.0
    eps: float = DEFAULT_EPS
    counters: PairingCounters = field(default_factory=PairingCounters)

    def __post_init__(self) -> None:
        if self.max_entries < 1 or self.max_early_labels < 0:
            raise ValueError("buffer sizes must be positive")
        if self.ttl <= 0 or self.early_label_ttl < 0:
            raise ValueError("time limits must be positive")
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._early: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def early_labels(self) -> int:
        """Labels currently waiting for their predictions."""
        return len(self._early)

    def add_predictions(
        self,
        event_id: str,
        champion: float,
        candidates: Mapping[int, float],
        now: float,
    ) -> Pair | None:
        """Hold the probabilities of one event; returns its pair if the label came first."""
        self.expire(now)
        if event_id in self._pending or event_id in self._done:
            self.counters.duplicates += 1
            return None
        early = self._early.pop(event_id, None)
        if early is not None:
            return self._pair(event_id, early[1], champion, dict(candidates))
        self._pending[event_id] = _Pending(now, champion, dict(candidates))
        while len(self._pending) > self.max_entries:
            self._pending.popitem(last=False)
            self.counters.evicted += 1
        return None

    def add_label(self, event_id: str, label: float, now: float) -> Pair | None:
        """Pair a label with its held predictions; hold it briefly if they are not there yet."""
        self.expire(now)
        if label not in (0.0, 1.0):
            self.counters.invalid_labels += 1
            return None
        if event_id in self._done or event_id in self._early:
            self.counters.duplicates += 1
            return None
        pending = self._pending.pop(event_id, None)
        if pending is not None:
            return self._pair(event_id, label, pending.champion, pending.candidates)
        if self.max_early_labels == 0:
            self.counters.early_labels_evicted += 1
            return None
        self._early[event_id] = (now, label)
        self.counters.early_labels_held += 1
        while len(self._early) > self.max_early_labels:
            self._early.popitem(last=False)
            self.counters.early_labels_evicted += 1
        return None

    def drop_candidate(self, version: int) -> None:
        """Forget a candidate's held predictions (it was decided or withdrawn)."""
        for p in self._pending.values():
            p.candidates.pop(version, None)

    def promote(self, version: int) -> int:
        """Candidate ``version`` became champion: its held probabilities become the champion's.

        Entries it did not score (it was not in shadow yet) are dropped; returns how many
        were dropped (counted as ``discarded``).
        """
        dropped = [eid for eid, p in self._pending.items() if version not in p.candidates]
        for eid in dropped:
            del self._pending[eid]
        for p in self._pending.values():
            p.champion = p.candidates.pop(version)
        self.counters.discarded += len(dropped)
        return len(dropped)

    def clear_predictions(self) -> int:
        """Drop every held prediction (the champion changed: they were scored by the old one).

        Returns how many were dropped (also counted as ``discarded``).
        """
        n = len(self._pending)
        self._pending.clear()
        self.counters.discarded += n
        return n

    def expire(self, now: float) -> None:
        """Drop predictions older than ``ttl`` and early labels older than their limit."""
        while self._pending:
            eid, p = next(iter(self._pending.items()))
            if now - p.at <= self.ttl:
                break
            del self._pending[eid]
            self.counters.expired += 1
        while self._early:
            eid, (at, _) = next(iter(self._early.items()))
            if now - at <= self.early_label_ttl:
                break
            del self._early[eid]
            self.counters.early_labels_expired += 1

    def _pair(
        self, event_id: str, label: float, champion: float, candidates: dict[int, float]
    ) -> Pair:
        self._done[event_id] = None
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)
        self.counters.paired += 1
        return Pair(
            event_id=event_id,
            label=label,
            champion_loss=log_loss(label, champion, self.eps),
            candidate_losses={v: log_loss(label, p, self.eps) for v, p in candidates.items()},
        )
