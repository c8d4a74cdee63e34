"""The champion watch (pure): a frozen model's error, watched by a drift detector.

Bugs caught: no alarm when a fixed model's error rises after a concept change (the gap
the learner's own detector leaves for regression); an alarm on a stationary stream; a
change time taken as the detection's instead of the split's; a new champion judged
against the old one's error level (no restart); an improvement raised as an alarm; the
detector inputs of a task computed like another task's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from river import stats

from services.model.task import Task
from services.online.champion_watch import ChampionWatch, detector_inputs
from services.online.config import LearnerSettings

T0 = datetime(2026, 5, 1, tzinfo=UTC)
REGRESSION = Task(kind="regression")


def _stream(n: int, change_at: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``3x + noise``, ``-3x + noise`` from ``change_at``; the champion's ``3x``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    slope = np.where(np.arange(n) >= (change_at if change_at is not None else n), -3.0, 3.0)
    return slope * x + rng.standard_normal(n), 3.0 * x


def _observe(watch: ChampionWatch, labels: np.ndarray, predictions: np.ndarray,
             first: int = 0) -> list:
    times = [T0 + timedelta(seconds=first + i) for i in range(len(labels))]
    ids = [f"e{first + i}" for i in range(len(labels))]
    return watch.observe(labels.tolist(), predictions, times, ids)


@pytest.mark.parametrize("seed", range(5))
def test_a_concept_change_raises_one_alarm_near_the_change(seed: int) -> None:
    labels, champion = _stream(4000, 2000, seed)
    watch = ChampionWatch(LearnerSettings(), REGRESSION)
    watch.follow(1)
    signals = []
    for start in range(0, 4000, 256):  # in consumer-sized batches
        signals += _observe(watch, labels[start:start + 256], champion[start:start + 256], start)
    assert len(signals) == 1, signals
    signal = signals[0]
    detected = int(signal.event_id[1:])
    assert 2000 <= detected <= 2300, detected
    assert signal.version == 1 and signal.error_after > signal.error_before
    change = (signal.change_time - T0).total_seconds()
    assert abs(change - 2000) <= 30, change  # the split, not the detection
    assert signal.watched == detected + 1


@pytest.mark.parametrize(("task", "seed"), [
    (Task(kind="binary"), 0), (Task(kind="multiclass", classes=(0, 1, 2)), 1),
    (REGRESSION, 2)])
def test_a_stationary_stream_raises_nothing(task: Task, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 20_000
    if task.kind == "binary":
        p = rng.random(n)
        labels, predictions = (rng.random(n) < p).astype(float), p
    elif task.kind == "multiclass":
        predictions = rng.dirichlet([1.0, 1.0, 1.0], size=n)
        labels = np.array([rng.choice(3, p=row) for row in predictions], dtype=float)
    else:
        labels, predictions = _stream(n, None, seed)
    watch = ChampionWatch(LearnerSettings(), task)
    watch.follow(1)
    assert _observe(watch, labels, predictions) == []
    assert watch.watched == n


def test_a_new_champion_restarts_the_watch_and_an_improvement_is_no_alarm() -> None:
    labels, champion = _stream(3000, 1500, 0)
    watch = ChampionWatch(LearnerSettings(), REGRESSION)
    watch.follow(1)
    assert len(_observe(watch, labels[:1800], champion[:1800])) == 1
    assert watch.follow(1) is False and watch.watched == 1800
    # v2 knows the new concept: its error is low again, a fresh stream
    assert watch.follow(2) is True and watch.watched == 0 and watch.version == 2
    better = -3.0 * (champion[1800:] / 3.0)
    assert _observe(watch, labels[1800:], better, 1800) == []
    # with signal "any", a better champion's drop in error would be an alarm
    watch = ChampionWatch(LearnerSettings(signal="any"), REGRESSION)
    watch.follow(1)
    worse_then_fine = np.r_[champion[1500:2500], -champion[2500:3000]]
    assert _observe(watch, labels[1500:3000], worse_then_fine, 1500)


def test_observing_before_following_a_champion_is_refused() -> None:
    with pytest.raises(RuntimeError, match="follow"):
        ChampionWatch(LearnerSettings(), REGRESSION).observe([1.0], np.array([1.0]), [T0], ["e"])


def test_detector_inputs_follow_the_task() -> None:
    assert detector_inputs(Task(kind="binary"), [1.0, 0.0, 1.0], np.array([0.7, 0.6, 0.2]),
                           stats.Var()) == [0.0, 1.0, 1.0]
    assert detector_inputs(Task(kind="multiclass", classes=(5, 7, 9)), [7.0, 9.0],
                           np.array([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1]]),
                           stats.Var()) == [0.0, 1.0]
    assert np.isnan(detector_inputs(REGRESSION, [1.0], np.array([5.0]), stats.Var())).all()
    spread = stats.Var()
    for y in (0.0, 2.0) * 20:  # sd 1.0 (population) / ~1.01 (sample)
        spread.update(y)
    sd = spread.get() ** 0.5
    got = detector_inputs(REGRESSION, [1.0, 1.0, 1.0], np.array([1.0, 2.5, 100.0, ]), spread)
    assert got[0] == 0.0
    assert got[1] == pytest.approx(1.5 / (3.0 * sd), rel=0.05)
    assert got[2] == 1.0  # capped
    assert detector_inputs(REGRESSION, [1.0], np.array([np.nan]), spread) == [1.0]
