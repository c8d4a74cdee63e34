"""Pair shadow predictions with their labels, per feature event, in a bounded buffer.

The shadow evaluator scores every feature event with the champion and each candidate
and keeps the predictions here, keyed by the feature event's ``event_id``, until the
label with the same ``event_id`` arrives. Then it yields the per-event losses of the
champion and of each candidate: one *paired* observation per candidate.

Predictions and losses follow the model's :class:`~services.model.task.Task` (the
champion's, which every candidate in shadow shares): a binary model's P(label == 1)
with its log loss, a multiclass model's K class probabilities with their cross-entropy,
a regression model's value with its squared error, all by :meth:`Task.event_loss`
(probabilities clipped to ``[eps, 1 - eps]`` so one confident mistake costs at most
``-log(eps)``). A label that does not fit the task (2 for a binary model, a class the
model does not declare) is counted (``invalid_labels``) and refused with a
:class:`~services.model.task.LabelError` naming it, which the service dead-letters.

The bounds, and the handling of early, late and duplicate labels, are
:class:`services.labeljoin.BoundedJoin`'s (shared with the online learner's join): an
event whose label never comes is dropped by them and simply never counts, for champion
and candidate alike, so dropping it does not bias the comparison. Early labels wait in a
smaller buffer here (``max_early_labels`` 20,000).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.labeljoin import BoundedJoin, JoinCounters
from services.model.task import DEFAULT_EPS, LabelError, Task

Prediction = float | Sequence[float] | np.ndarray
"""One event's prediction: a float (binary, regression) or K probabilities (multiclass)."""


@dataclass(frozen=True, slots=True)
class Pair:
    """The losses of one labelled event: the champion's and each candidate's."""

    event_id: str
    label: float
    champion_loss: float
    candidate_losses: Mapping[int, float]  # candidate version -> loss


@dataclass(slots=True)
class _Pending:
    champion: Prediction
    candidates: dict[int, Prediction]


@dataclass(slots=True)
class PairingCounters(JoinCounters):
    """What happened to the events that passed through the buffer."""

    invalid_labels: int = 0
    discarded: int = 0  # predictions dropped because the champion changed

    @property
    def paired(self) -> int:
        """Labelled events turned into pairs."""
        return self.joined


@dataclass
class PairingBuffer(BoundedJoin[_Pending, float]):
    """Bounded buffer of one model's predictions awaiting labels (and of labels awaiting
    predictions); losses by ``task``."""

    task: Task = field(default_factory=Task)
    max_early_labels: int = 20_000
    counters: PairingCounters = field(default_factory=PairingCounters)
    eps: float = DEFAULT_EPS

    def add_predictions(
        self,
        event_id: str,
        champion: Prediction,
        candidates: Mapping[int, Prediction],
        now: float,
    ) -> Pair | None:
        """Hold the predictions of one event; returns its pair if the label came first."""
        held = _Pending(champion, dict(candidates))
        return self._pair(event_id, self.put_event(event_id, held, now))

    def add_label(self, event_id: str, label: float, now: float) -> Pair | None:
        """Pair a label with its held predictions; hold it briefly if they are not there yet.

        Raises :class:`LabelError` (counted as ``invalid_labels``, nothing held) for a label
        that does not fit the task.
        """
        problem = self.task.label_problem(label)
        if problem is not None:
            self.expire(now)
            self.counters.invalid_labels += 1
            raise LabelError(f"label: {problem} (task {self.task.kind})")
        return self._pair(event_id, self.put_label(event_id, label, now))

    def drop_candidate(self, version: int) -> None:
        """Forget a candidate's held predictions (it was decided or withdrawn)."""
        for p in self.waiting():
            p.candidates.pop(version, None)

    def promote(self, version: int, previous: int | None = None) -> int:
        """Candidate ``version`` became champion: its held predictions become the champion's,
        and the old champion's are kept as those of ``previous`` (its version, for the
        rollback watch that compares the two), when given.

        Entries it did not score (it was not in shadow yet) are dropped; returns how many
        were dropped (counted as ``discarded``).
        """
        dropped = self.discard_waiting(lambda p: version not in p.candidates)
        for p in self.waiting():
            old, p.champion = p.champion, p.candidates.pop(version)
            if previous is not None:
                p.candidates[previous] = old
        self.counters.discarded += dropped
        return dropped

    def clear_predictions(self) -> int:
        """Drop every held prediction (the champion changed: they were scored by the old one).

        Returns how many were dropped (also counted as ``discarded``).
        """
        n = self.discard_waiting()
        self.counters.discarded += n
        return n

    def _pair(self, event_id: str, joined: tuple[_Pending, float] | None) -> Pair | None:
        if joined is None:
            return None
        pending, label = joined
        return Pair(
            event_id=event_id,
            label=label,
            champion_loss=self.task.event_loss(label, pending.champion, self.eps),
            candidate_losses={v: self.task.event_loss(label, p, self.eps)
                              for v, p in pending.candidates.items()},
        )
