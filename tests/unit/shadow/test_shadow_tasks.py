"""Shadow evaluation for every task: paired losses, invalid labels, decisions, rollback.

Losses are checked against values computed here from their formulas (not through
``Task``); decisions run the real pairing buffer, book and sequential test on
simulated champion/candidate predictions of a multiclass and a regression model.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.model.task import LabelError, Task
from services.shadow.book import ShadowBook, Verdict
from services.shadow.decision import PairedStats, ShadowPolicy, decide
from services.shadow.pairing import PairingBuffer
from services.shadow.rollback import LossSummary, RollbackMonitor, RollbackPolicy
from services.shadow.service import task_mismatch

T0 = datetime(2026, 4, 1, tzinfo=UTC)
BINARY = Task()
MULTI = Task(kind="multiclass", classes=(3, 7, 9))
REGRESSION = Task(kind="regression")
POLICY = ShadowPolicy(min_pairs=200, look_every=200, max_pairs=1000)
ROLLBACK = RollbackPolicy(window=400, min_events=200, look_every=200, margin=0.05)


def test_multiclass_pairs_carry_cross_entropy_of_the_true_class() -> None:
    buf = PairingBuffer(task=MULTI)
    buf.add_predictions("e1", np.array([0.2, 0.5, 0.3]), {4: np.array([0.1, 0.1, 0.8])}, 0.0)
    pair = buf.add_label("e1", 9.0, now=1.0)  # class 9 is the third output
    assert pair is not None
    assert pair.champion_loss == pytest.approx(-math.log(0.3))
    assert pair.candidate_losses == {4: pytest.approx(-math.log(0.8))}


def test_regression_pairs_carry_squared_error_in_label_units() -> None:
    buf = PairingBuffer(task=REGRESSION)
    assert buf.add_label("e1", 12.5, now=0.0) is None  # early: waits for the predictions
    pair = buf.add_predictions("e1", 10.0, {2: 12.0, 3: 20.0}, now=1.0)
    assert pair is not None
    assert pair.champion_loss == pytest.approx(6.25)
    assert pair.candidate_losses == {2: pytest.approx(0.25), 3: pytest.approx(56.25)}


@pytest.mark.parametrize(("task", "label", "message"), [
    (BINARY, 2.0, "a binary label is 0 or 1, got 2.0"),
    (MULTI, 4.0, "a label is one of the classes [3, 7, 9], got 4.0"),
    (MULTI, 7.5, "a label is one of the classes [3, 7, 9], got 7.5"),
    (REGRESSION, math.inf, "a finite number is expected, got inf"),
])
def test_label_of_another_task_is_refused_naming_field_and_value(
    task: Task, label: float, message: str,
) -> None:
    buf = PairingBuffer(task=task)
    prediction = np.array([0.2, 0.5, 0.3]) if task.kind == "multiclass" else 0.4
    buf.add_predictions("e1", prediction, {2: prediction}, now=0.0)
    with pytest.raises(LabelError) as info:
        buf.add_label("e1", label, now=0.0)
    assert str(info.value) == f"label: {message} (task {task.kind})"
    assert buf.counters.invalid_labels == 1 and buf.counters.paired == 0 and len(buf) == 1


def _multiclass_world(n: int, candidate_sharpness: float, seed: int):
    """Labels from true class probabilities; the champion predicts a blurred version, the
    candidate a version ``candidate_sharpness`` of the way from uniform to the truth."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, 3))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([MULTI.classes[rng.choice(3, p=p)] for p in truth], dtype=float)

    def blend(w: float) -> np.ndarray:
        return w * truth + (1.0 - w) / 3.0

    return labels, blend(0.5), blend(candidate_sharpness)


def _regression_world(n: int, candidate_noise: float, seed: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    labels = 3.0 * x + rng.normal(0.0, 0.5, n)
    champion = 3.0 * x + rng.normal(0.0, 1.0, n)
    candidate = 3.0 * x + rng.normal(0.0, candidate_noise, n)
    return labels * scale, champion * scale, candidate * scale


def _shadow(task: Task, labels, champion, candidate) -> tuple[ShadowBook, Verdict | None]:
    """Run one candidate (v2) against the champion (v1) through buffer and book."""
    book = ShadowBook(POLICY, ROLLBACK)
    assert book.add_candidate("m", 2, 1, "r2", "uri/2", "0" * 64, 1, T0) is None
    buf = PairingBuffer(task=task)
    for i, label in enumerate(labels):
        buf.add_predictions(f"e{i}", champion[i], {2: candidate[i]}, now=float(i))
        pair = buf.add_label(f"e{i}", float(label), now=float(i))
        assert pair is not None
        book.add_pair("m", pair)
        verdicts = book.decide("m", T0 + timedelta(seconds=i))
        if verdicts:
            [verdict] = verdicts
            return book, verdict
    return book, None


@pytest.mark.parametrize(("task", "world"), [
    (MULTI, lambda: _multiclass_world(1000, 0.9, seed=1)),
    (REGRESSION, lambda: _regression_world(1000, 0.3, seed=1)),
])
def test_clearly_better_candidate_is_promoted_and_watched(task: Task, world) -> None:
    book, verdict = _shadow(task, *world())
    assert verdict is not None
    assert (verdict.decision.action, verdict.decision.reason) == (
        "promote", "better by at least 1.0% at look 1")
    assert book.promoted("m", verdict.run) == []
    m = verdict.run.stats.moments
    assert book.watches["m"].monitor.shadow.mean == m.mean_candidate < m.mean_champion


@pytest.mark.parametrize(("task", "world"), [
    (MULTI, lambda: _multiclass_world(1000, 0.1, seed=2)),
    (REGRESSION, lambda: _regression_world(1000, 2.0, seed=2)),
])
def test_clearly_worse_candidate_is_rejected(task: Task, world) -> None:
    book, verdict = _shadow(task, *world())
    assert verdict is not None
    assert (verdict.decision.action, verdict.decision.reason) == (
        "reject", "worse than the champion by more than 2.0% at look 1")
    assert book.champions["m"] == 1 and not book.runs["m"]


def test_regression_decision_does_not_depend_on_the_label_scale() -> None:
    """The margins are relative: kilograms or grams (x1000, losses x1e6) decide alike."""
    outcomes = []
    for scale in (1.0, 1000.0):
        labels, champion, candidate = _regression_world(1000, 0.93, seed=3, scale=scale)
        buf = PairingBuffer(task=REGRESSION)
        stats = PairedStats.for_policy(POLICY)
        for i, label in enumerate(labels):
            buf.add_predictions(f"e{i}", champion[i], {2: candidate[i]}, now=0.0)
            pair = buf.add_label(f"e{i}", float(label), now=0.0)
            assert pair is not None
            stats.add(pair.champion_loss, pair.candidate_losses[2])
        d = decide(stats, POLICY, 0.0)
        assert d.test is not None
        outcomes.append((d.action, d.look, round(d.test.statistic, 9),
                         round(d.test.relative_improvement, 9)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == "promote"  # ~11% lower squared error, whatever the units


def test_rollback_watch_on_squared_error_is_scale_free() -> None:
    rng = np.random.default_rng(4)
    live = rng.normal(0.0, 1.5, 400) ** 2  # live squared errors 2.25x the shadow estimate
    statuses = []
    for scale in (1.0, 1e6):
        monitor = RollbackMonitor(ROLLBACK, LossSummary(1000, 1.0 * scale, 2.0 * scale**2))
        for loss in live:
            monitor.add(float(loss) * scale)
        s = monitor.status()
        statuses.append((s.action, s.live.n if s.live else None, round(s.statistic or 0, 9)))
    assert statuses[0] == statuses[1] and statuses[0][:2] == ("rollback", 200)


def test_a_promoted_candidate_exact_on_every_pair_is_not_watched() -> None:
    """Zero shadow loss (a regression model exact in shadow) leaves no relative margin."""
    book = ShadowBook(POLICY, ROLLBACK)
    book.add_candidate("m", 2, 1, "r2", "uri/2", "0" * 64, 1, T0)
    run = book.runs["m"][2]
    for _ in range(POLICY.min_pairs):
        run.stats.add(1.0, 0.0)
    [verdict] = book.decide("m", T0)
    assert verdict.decision.action == "promote"
    assert book.promoted("m", verdict.run) == [] and "m" not in book.watches
    assert book.champions["m"] == 2


@pytest.mark.parametrize(("candidate", "champion", "reason"), [
    (REGRESSION, BINARY, "candidate task regression differs from the champion's binary"),
    (Task(kind="multiclass", classes=(3, 7)), MULTI,
     "candidate task multiclass [3, 7] differs from the champion's multiclass [3, 7, 9]"),
])
def test_a_candidate_of_another_task_is_refused(candidate: Task, champion: Task,
                                                reason: str) -> None:
    assert task_mismatch(candidate, champion) == f"{reason}: their losses are not comparable"
    assert task_mismatch(champion, champion) is None
