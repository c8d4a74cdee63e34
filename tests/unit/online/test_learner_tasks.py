"""The online learner per task: multiclass probabilities over the declared classes,
regression values with a unit-free drift input, the task's metrics and label checks."""

from __future__ import annotations

import math
import pickle
import random

import pytest
from river import tree

from services.featurespec import FeatureSpec, ModelSpec
from services.model.task import LabelError, Task
from services.online.learner import LearnerConfig, OnlineLearner

SPEC = ModelSpec("m", "id", tuple(FeatureSpec(f"x{i}", "numeric") for i in range(3)))
MULTI = Task(kind="multiclass", classes=(3, 7, 9))
REGRESSION = Task(kind="regression")
CENTERS = {3: (0.0, 0.0), 7: (2.0, 0.0), 9: (0.0, 2.0)}


def _multiclass_events(seed: int, n: int, swap_at: int | None = None) -> list[tuple[dict, float]]:
    """Three Gaussian classes (priors 0.6/0.25/0.15); after ``swap_at`` the classes of
    the centres rotate (same inputs, new labels: a concept change)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        c = rng.choices((3, 7, 9), (0.6, 0.25, 0.15))[0]
        cx, cy = CENTERS[c]
        x = {"x0": cx + rng.gauss(0, 0.7), "x1": cy + rng.gauss(0, 0.7), "x2": rng.gauss(0, 1)}
        label = c if swap_at is None or i < swap_at else {3: 7, 7: 9, 9: 3}[c]
        out.append((x, float(label)))
    return out


def _regression_events(
    seed: int, n: int, scale: float = 1.0, change_at: int | None = None
) -> list[tuple[dict, float]]:
    """``y = scale·(100 + c·x + noise)``; the coefficients ``c`` change at ``change_at``."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x = {f"x{j}": rng.gauss(50, 10) for j in range(3)}
        c = (3, -2, 1) if change_at is None or i < change_at else (-1, 2, 3)
        y = 100 + sum(cj * (x[f"x{j}"] - 50) for j, cj in enumerate(c)) + rng.gauss(0, 10)
        out.append((x, scale * y))
    return out


def _learn(learner: OnlineLearner, events: list[tuple[dict, float]]) -> list[int]:
    """Learn every event; the ``learned`` count of each drift signal."""
    return [o.drift.learned for i, (x, y) in enumerate(events)
            if (o := learner.learn_one(x, y, f"e{i}")).drift is not None]


# -- multiclass ----------------------------------------------------------------------------

def test_multiclass_answers_every_declared_class_in_order() -> None:
    learner = OnlineLearner(SPEC, task=MULTI)
    assert learner.predict({"x0": 0.0}) == pytest.approx((1 / 3, 1 / 3, 1 / 3))  # no opinion
    for x, y in _multiclass_events(0, 400):
        if y != 9.0:  # class 9 never met
            learner.learn_one(x, y)
    probs = learner.predict({"x0": 2.0, "x1": 0.0, "x2": 0.0})
    assert len(probs) == 3 and sum(probs) == pytest.approx(1.0)
    assert probs[2] == 0.0 and probs[1] > probs[0]  # class 7's centre; 9 unseen


def test_multiclass_learns_beyond_the_majority_class_and_reports_its_metrics() -> None:
    learner = OnlineLearner(SPEC, task=MULTI)
    assert type(learner.pipeline.steps["OneVsRestClassifier"]).__name__ == "OneVsRestClassifier"
    assert _learn(learner, _multiclass_events(1, 3000)) == []
    m = learner.metrics()
    assert set(m) == {"learned", "error_rate", "rolling_accuracy", "rolling_cross_entropy",
                      "detections", "refused_values", "refused_updates"}
    assert m["rolling_accuracy"] > 0.8  # majority class alone: 0.6
    assert 0.0 < m["rolling_cross_entropy"] < 0.6  # uniform guessing: ln 3 = 1.10
    assert m["error_rate"] == pytest.approx(learner.errors / 3000)


def test_multiclass_concept_change_is_detected_after_it() -> None:
    learner = OnlineLearner(SPEC, task=MULTI)
    drifts = _learn(learner, _multiclass_events(2, 2400, swap_at=1200))
    assert drifts and 1200 <= drifts[0] <= 1400
    signal = learner.drain_signals()[0]
    assert signal.error_after > signal.error_before


def test_multiclass_mini_batch_equals_event_by_event() -> None:
    events = _multiclass_events(3, 40)  # (pandas per call: slow, and 40 say it)
    one, many = OnlineLearner(SPEC, task=MULTI), OnlineLearner(SPEC, task=MULTI)
    assert many.supports_many
    a = [one.learn_one(x, y) for x, y in events]
    b = [o for x, y in events for o in many.learn_many([x], [y])]
    assert [o.prediction for o in a] == [pytest.approx(o.prediction, rel=1e-9) for o in b]
    assert [o.label for o in b][:3] == [int(y) for _, y in events[:3]]


def test_a_configured_tree_learns_multiclass() -> None:
    cfg = LearnerConfig(estimator="tree.HoeffdingTreeClassifier", params={"grace_period": 50})
    learner = OnlineLearner(SPEC, cfg, MULTI)
    assert isinstance(learner.pipeline.steps["HoeffdingTreeClassifier"],
                      tree.HoeffdingTreeClassifier)
    _learn(learner, _multiclass_events(4, 2000))
    assert learner.metrics()["rolling_accuracy"] > 0.75


@pytest.mark.parametrize(("task", "label"), [(MULTI, 5.0), (MULTI, 3.5), (Task(), 2.0),
                                             (REGRESSION, math.inf)])
def test_a_label_outside_the_task_is_refused_naming_it(task: Task, label: float) -> None:
    learner = OnlineLearner(SPEC, task=task)
    with pytest.raises(LabelError, match=rf"^label: .*{label}"):
        learner.learn_one({"x0": 1.0}, label)
    with pytest.raises(LabelError):
        learner.learn_many([{"x0": 1.0, "x1": 1.0, "x2": 1.0}], [label])
    assert learner.learned == 0


# -- regression ----------------------------------------------------------------------------

def test_regression_learns_labels_in_their_own_units() -> None:
    learner = OnlineLearner(SPEC, task=REGRESSION)
    assert not learner.supports_many  # the target scaler learns event by event
    _learn(learner, _regression_events(5, 3000, scale=1000.0))
    m = learner.metrics()
    assert set(m) == {"learned", "rolling_mae", "rolling_rmse", "detections",
                      "refused_values", "refused_updates"}
    assert m["rolling_mae"] < 1000.0 * 10.0  # noise sd 10 (x1000): MAE 8,000 at best
    assert m["rolling_mae"] < m["rolling_rmse"] < 1000.0 * 15.0
    x = {"x0": 60.0, "x1": 50.0, "x2": 50.0}
    assert learner.predict(x) == pytest.approx(130_000.0, rel=0.05)


def test_regression_drift_input_does_not_depend_on_the_label_unit() -> None:
    # the raw absolute error missed this change at x0.001 (ADWIN's bound assumes [0, 1])
    found = {}
    for scale in (1.0, 1000.0, 0.001):
        learner = OnlineLearner(SPEC, task=REGRESSION)
        found[scale] = _learn(learner, _regression_events(6, 2400, scale, change_at=1200))
        assert all(0.0 <= o <= 1.0 for o in [learner.learn_one(x, y).error for x, y in
                                            _regression_events(7, 20, scale)])
    assert found[1.0] and 1200 <= found[1.0][0] <= 1350
    assert found[1000.0] == found[1.0] == found[0.001]
    assert _learn(OnlineLearner(SPEC, task=REGRESSION), _regression_events(8, 2400)) == []


def test_regression_mini_batch_without_target_scaling_equals_event_by_event() -> None:
    cfg = LearnerConfig(scale_target=False, params={"intercept_lr": 0.1})
    events = _regression_events(9, 40)
    one, many = OnlineLearner(SPEC, cfg, REGRESSION), OnlineLearner(SPEC, cfg, REGRESSION)
    assert many.supports_many
    a = [one.learn_one(x, y) for x, y in events]
    b = [o for x, y in events for o in many.learn_many([x], [y])]
    assert [o.prediction for o in a] == pytest.approx([o.prediction for o in b], rel=1e-9)
    assert one.metrics() == pytest.approx(many.metrics(), rel=1e-9)


def test_one_extreme_label_does_not_rescale_the_regressor() -> None:
    learner = OnlineLearner(SPEC, task=REGRESSION)
    events = _regression_events(10, 1000)
    _learn(learner, events)
    x = {"x0": 60.0, "x1": 50.0, "x2": 50.0}
    before = learner.predict(x)
    learner.learn_one(x, 1e11)
    after = learner.predict(x)
    assert learner.healthy and learner.refused_updates == 0
    assert after == pytest.approx(before, rel=0.2)  # the label was winsorized, not learned
    _learn(learner, events[:200])
    assert learner.predict(x) == pytest.approx(130.0, rel=0.1)


@pytest.mark.parametrize("task", [MULTI, REGRESSION])
def test_a_non_finite_nested_state_is_restored(task: Task) -> None:
    learner = OnlineLearner(SPEC, LearnerConfig(good_every=10), task)
    events = (_multiclass_events(11, 100) if task is MULTI else _regression_events(11, 100))
    _learn(learner, events)
    probe = events[0][0]
    good = learner.predict(probe)
    estimator = learner._estimator
    if task is MULTI:
        estimator.classifiers[7]._weights["x0"] = math.nan  # one of one-vs-rest's models
    else:
        estimator.regressor._weights["x0"] = math.nan  # the regressor behind the scaler
    assert not learner.healthy
    learner.learn_one(*events[1])
    assert learner.healthy and learner.refused_updates == 1
    assert learner.predict(probe) == pytest.approx(good)


@pytest.mark.parametrize("task", [Task(), MULTI, REGRESSION], ids=lambda t: t.kind)
def test_a_pickled_learner_answers_the_same(task: Task) -> None:
    learner = OnlineLearner(SPEC, task=task)
    events = {"binary": [(x, float(y > 100)) for x, y in _regression_events(12, 300)],
              "multiclass": _multiclass_events(12, 300),
              "regression": _regression_events(12, 300)}[task.kind]
    _learn(learner, events)
    clone = pickle.loads(pickle.dumps(learner))
    assert clone.task == task and clone.metrics() == pytest.approx(learner.metrics())
    probe = events[-1][0]
    assert clone.predict(probe) == pytest.approx(learner.predict(probe))
    x, y = events[0]
    assert clone.learn_one(x, y).prediction == pytest.approx(learner.learn_one(x, y).prediction)


def test_predict_proba_is_for_binary_models_only() -> None:
    with pytest.raises(ValueError, match="use predict"):
        OnlineLearner(SPEC, task=REGRESSION).predict_proba({"x0": 1.0})
    out = OnlineLearner(SPEC, task=REGRESSION).learn_one({"x0": 1.0}, 3.0)
    with pytest.raises(AttributeError):
        _ = out.proba
