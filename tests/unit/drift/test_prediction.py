"""Prediction drift core: per task what is compared, that a moved score distribution is
flagged and an unmoved one is not, the policy switch, and the summaries in the report."""

from __future__ import annotations

import numpy as np
import pytest

from services.drift.policy import DriftPolicy, WindowVerdict, with_prediction
from services.drift.prediction import (
    PREDICTED_CLASS,
    PREDICTION,
    build_prediction_reference,
    prediction_drift,
    prediction_values,
)
from services.model.task import Task

BINARY = Task()
REGRESSION = Task(kind="regression")
MULTI = Task(kind="multiclass", classes=(3, 5, 7))


def _scores(task: Task, rng: np.random.Generator, n: int, moved: bool) -> np.ndarray:
    if task.kind == "binary":
        return rng.beta(4 if moved else 2, 5, n)
    if task.kind == "regression":
        return rng.normal(1.0 if moved else 0.0, 1.0, n)
    return rng.dirichlet([4, 1, 1] if moved else [1, 1, 1], n)


@pytest.mark.parametrize("task", [BINARY, REGRESSION, MULTI], ids=lambda t: t.kind)
def test_moved_predictions_drift_and_unmoved_do_not(task: Task) -> None:
    rng = np.random.default_rng(1)
    ref = build_prediction_reference("m", task, _scores(task, rng, 20_000, False), "snap",
                                     champion_version=2)
    same = prediction_drift(ref, _scores(task, rng, 4_000, False), DriftPolicy())
    moved = prediction_drift(ref, _scores(task, rng, 4_000, True), DriftPolicy())
    assert not same.drifted and same.psi < 0.05
    assert moved.drifted and moved.psi > 0.2
    if task.kind == "multiclass":
        assert moved.name == PREDICTED_CLASS and moved.kind == "categorical"
        assert moved.tvd is not None and moved.tvd > 0.2 and moved.ks_statistic is None
        assert set(moved.bins) >= {"3", "5", "7"}
    else:
        assert moved.name == PREDICTION and moved.kind == "numeric"
        assert moved.ks_statistic is not None and moved.ks_statistic > 0.2
        # summaries: the moved window's mean is above the reference's
        assert moved.window_summary.mean > moved.reference_summary.mean + 0.1
        assert len(moved.reference_summary.quantiles) == 5


def test_prediction_values_per_task() -> None:
    probs = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])
    assert prediction_values(MULTI, probs).tolist() == ["5", "3"]
    values = prediction_values(REGRESSION, np.array([1.5, np.inf, np.nan]))
    assert values[0] == 1.5 and np.isnan(values[1:]).all()  # non-finite is missing
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        prediction_values(MULTI, np.zeros(4))
    with pytest.raises(ValueError, match=r"\[n\]"):
        prediction_values(BINARY, np.zeros((4, 2)))


def test_prediction_reaches_the_window_verdict_only_when_the_policy_says_so() -> None:
    quiet = WindowVerdict(features=(), drifted_share=0.0, drifted=False, critical_drifted=(),
                          ks_level=0.01)
    assert with_prediction(quiet, True, DriftPolicy()) is quiet  # default: report only
    on = DriftPolicy(prediction_in_policy=True)
    assert with_prediction(quiet, True, on).drifted
    assert with_prediction(quiet, True, on).prediction_drifted
    assert not with_prediction(quiet, False, on).drifted
    assert not with_prediction(quiet, None, on).drifted
