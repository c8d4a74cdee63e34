"""The champion's own error on labelled events, watched by a drift detector (pure).

The online learner's detector reads the error of a model that keeps learning: after a
concept change it adapts within a few hundred events, so a change of a smooth target is
often over before its detector is sure (measured on the closed-loop benchmark's
regression concept change: the learner's scaled error went from 0.11 to 0.14 for 500
events and back, and its ADWIN never fired, in 3 seeds of 3). The champion does not
learn: after a concept change its error stays up until a new champion is promoted, which
is exactly what a retrain is for. So each labelled event is also scored by the
registry's champion (by the service, see :mod:`services.online.service`), and its error
feeds a detector of its own, built like the learner's (``online.drift_detector``,
``drift_params``, ``warmup``, ``cut_window``, ``signal``).

The detector input per event is the learner's (:func:`detector_inputs`): 1.0 for a
wrong class and 0.0 for a right one; for regression the absolute error in units of
three label standard deviations (the labels' own running spread), capped at 1. A new
champion (a promotion or a rollback) starts a fresh detector: its errors are another
stream. The estimated change point is the least-squares split of the inputs since the
last detection (:mod:`services.online.cutpoint`), mapped to the event time of that
event, which the watch keeps with each input.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from river import stats

from services.model.task import Task
from services.online.config import LearnerSettings, build_detector
from services.online.cutpoint import estimate_post_change
from services.online.learner import scaled_miss, winsorize

__all__ = ["ChampionSignal", "ChampionWatch", "detector_inputs"]


SPREAD_WARMUP = 30  # regression: labels seen before an error can be put in label sd


def detector_inputs(task: Task, labels: Sequence[float], predictions: np.ndarray,
                    spread: stats.Var, limit: float = 10.0) -> list[float]:
    """Per event, what the detector reads (see the module doc); ``spread`` (regression)
    is updated with each label first, winsorized at ``limit`` sd once it has 30. NaN
    while the spread has fewer than :data:`SPREAD_WARMUP` labels (not fed to the
    detector: an error over an unknown scale is noise, and capped at 1 it would read as
    a change)."""
    if task.kind == "binary":
        return [float((float(p) >= 0.5) != (float(y) == 1.0))
                for y, p in zip(labels, predictions, strict=True)]
    if task.kind == "multiclass":
        classes = task.classes
        return [float(classes[int(np.argmax(p))] != int(y))
                for y, p in zip(labels, predictions, strict=True)]
    out = []
    for y, value in zip(labels, predictions, strict=True):
        y = float(y)
        spread.update(winsorize(spread, y, limit))
        if spread.n < SPREAD_WARMUP:
            out.append(math.nan)
            continue
        sd = math.sqrt(max(spread.get(), 0.0))
        miss = abs(y - float(value))
        if not math.isfinite(miss):
            out.append(1.0)  # a non-finite prediction is as wrong as it gets
            continue
        out.append(scaled_miss(miss, sd))
    return out


@dataclass(frozen=True, slots=True)
class ChampionSignal:
    """The champion's error rose: a detection of the watch, with where it began."""

    version: int
    watched: int  # events watched on this version when it fired
    event_id: str | None
    detector: str
    error_before: float
    error_after: float
    post_change: int  # watched events since the estimated change, the detection's included
    cut: str  # split | window | detection
    change_time: datetime  # event time of the first event after the estimated change


class ChampionWatch:
    """One model's champion error stream and its detector (pickled with the service's
    state, so a restart goes on where the last snapshot was)."""

    def __init__(self, settings: LearnerSettings, task: Task) -> None:
        self.settings = settings
        self.task = task
        self.uid = uuid.uuid4().hex[:8]  # names this watch's requests
        self.version: int | None = None
        self.watched = 0
        self.detections = 0
        self._restart(None)

    def _restart(self, version: int | None) -> None:
        self.version = version
        self.watched = 0
        self.detector = build_detector(self.settings)
        self.spread = stats.Var()
        keep = max(self.settings.cut_window, 1)
        self.recent: deque[float] = deque(maxlen=keep)  # detector inputs since a detection
        self.recent_times: deque[float] = deque(maxlen=keep)  # their event times (POSIX s)

    def follow(self, version: int) -> bool:
        """Watch ``version`` from now on; True when it is another champion (restarted)."""
        if version == self.version:
            return False
        self._restart(version)
        return True

    def observe(self, labels: Sequence[float], predictions: np.ndarray,
                times: Sequence[datetime],
                event_ids: Sequence[str | None]) -> list[ChampionSignal]:
        """Feed the champion's predictions for labelled events; the detections, in order.

        A detection counts only after ``warmup`` watched events and, with ``signal``
        ``worsening``, only when the error went up (a better champion is no alarm).
        """
        if self.version is None:
            raise RuntimeError("follow() a champion version before observing")
        inputs = detector_inputs(self.task, labels, predictions, self.spread,
                                 self.settings.clip_scaled)
        found: list[ChampionSignal] = []
        for error, when, event_id in zip(inputs, times, event_ids, strict=True):
            self.watched += 1
            if math.isnan(error):
                continue
            before = getattr(self.detector, "estimation", math.nan)
            self.detector.update(error)
            self.recent.append(error)
            self.recent_times.append(when.timestamp())
            if not self.detector.drift_detected:
                continue
            self.detections += 1
            after = getattr(self.detector, "estimation", math.nan)
            post, cut = estimate_post_change(self.recent, self.detector)
            post = max(1, min(post, len(self.recent)))
            change_time = datetime.fromtimestamp(self.recent_times[-post], UTC)
            self.recent.clear()
            self.recent_times.clear()
            worse = not (after <= before)
            if self.watched <= self.settings.warmup or not (
                    self.settings.signal == "any" or worse):
                continue
            found.append(ChampionSignal(
                version=self.version, watched=self.watched, event_id=event_id,
                detector=self.settings.drift_detector, error_before=before,
                error_after=after, post_change=post, cut=cut,
                change_time=change_time))
        return found
