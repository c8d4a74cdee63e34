"""Prediction drift core: per task what is compared, that a moved score distribution is
flagged and an unmoved one is not, the policy switch, and the summaries in the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
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


def test_summaries_match_numpy_and_leave_out_infinities() -> None:
    from datetime import UTC, datetime

    from services.drift.profile import build_reference_profile, profile_summaries
    from services.drift.window import WindowAccumulator, window_summaries
    from services.featurespec import FeatureSpec, ModelSpec
    from streams.contracts import SUMMARY_QUANTILES

    spec = ModelSpec(model="m", entity="e", features=(
        FeatureSpec("x", "numeric"), FeatureSpec("y", "numeric"), FeatureSpec("c", "categorical")))
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 2.0, 1_000)
    acc = WindowAccumulator(spec, max_events=10_000)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i, v in enumerate(x):
        y = None if i % 4 == 0 else (float("inf") if i == 1 else float(i))
        acc.add(t0, {"x": float(v), "y": y, "c": "a"})
    window = acc.flush()
    got = window_summaries(window, spec)
    assert set(got) == {"x", "y"}  # categorical: the drift statistics carry missing share
    assert got["x"].mean == pytest.approx(x.mean()) and got["x"].std == pytest.approx(x.std())
    assert got["x"].quantiles == pytest.approx(np.quantile(x, SUMMARY_QUANTILES).tolist())
    ys = np.array([float(i) for i in range(1_000) if i % 4 and i != 1])
    assert got["y"].mean == pytest.approx(ys.mean())  # inf is a value, not in the mean
    assert got["y"].missing_share == pytest.approx(0.25 + 0.001)  # inf counts as invalid
    frame = pd.DataFrame({"x": x, "y": np.where(np.arange(1_000) % 4 == 0, np.nan, 1.0),
                          "c": ["a"] * 1_000})
    ref = profile_summaries(build_reference_profile(frame, spec, "s"))
    assert ref["x"].mean == pytest.approx(x.mean()) and ref["y"].missing_share == 0.25
    assert ref["c"].mean is None and ref["c"].missing_share == 0.0
