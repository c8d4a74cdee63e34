"""Per task: the online estimator is checked against the task when the configuration
loads, and predictions are answered in the task's form (learner, snapshot, champion)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from services.featurespec import FeatureSpec, ModelSpec
from services.model.task import Task
from services.online.learner import OnlineLearner
from services.online.predict import Answer, answer_doc, answered, predict, prediction_fields
from services.online.state import OnlineState, SnapshotStore
from streams.settings import load_settings

SPEC = ModelSpec("m", "id", (FeatureSpec("x", "numeric"),))
MULTI = Task(kind="multiclass", classes=(0, 2, 5))


def _load(task: object, online: dict) -> None:
    load_settings(models={"m": {"task": task, "online": online}})


def test_default_estimators_follow_the_task() -> None:
    steps = {kind: list(OnlineLearner(SPEC, task=task).pipeline.steps)[-1]
             for kind, task in (("binary", Task()), ("multiclass", MULTI),
                                ("regression", Task(kind="regression")))}
    assert steps == {"binary": "LogisticRegression", "multiclass": "OneVsRestClassifier",
                     "regression": "WinsorizingTargetScaler"}
    s = load_settings(models={"m": {"task": "regression"}})
    assert s.model("m").online.estimator is None  # the task's default, nothing built


@pytest.mark.parametrize(("task", "online", "match"), [
    ("regression", {"estimator": "linear_model.LogisticRegression"}, "not a Regressor"),
    ({"kind": "multiclass", "classes": [0, 1, 2]},
     {"estimator": "linear_model.LogisticRegression"}, "two classes only"),
    ("binary", {"estimator": "linear_model.LinearRegression"}, "not a Classifier"),
    ("binary", {"params": {"lrr": 0.1}}, "lrr"),
    ("binary", {"estimator": "os.System"}, "no module river.os"),
    ("binary", {"estimator": "subprocess"}, "module.Class"),
    ("binary", {"drift_detector": "tree.HoeffdingTreeClassifier"}, "DriftDetector"),
])
def test_an_estimator_that_does_not_fit_the_task_fails_at_load(
    task: object, online: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        _load(task, online)


def test_estimators_that_fit_load_and_a_disabled_learner_is_not_checked() -> None:
    _load({"kind": "multiclass", "classes": [0, 1, 2]},
          {"estimator": "tree.HoeffdingTreeClassifier", "params": {"grace_period": 50}})
    _load("regression", {"estimator": "tree.HoeffdingTreeRegressor"})
    _load("binary", {"params": {"optimizer": {"river": "optim.SGD", "params": {"lr": 0.05}}}})
    _load("regression", {"enabled": False, "estimator": "linear_model.LogisticRegression"})


def test_prediction_fields_per_task() -> None:
    assert prediction_fields(Task(), np.float64(0.25)) == {"proba": 0.25}
    assert prediction_fields(Task(kind="regression"), 12.5) == {"value": 12.5}
    row = np.array([0.2, 0.7, 0.1])  # a Scorer row, in the order of the classes
    assert prediction_fields(MULTI, row) == {
        "probabilities": {"0": 0.2, "2": 0.7, "5": 0.1}, "label": 2}
    with pytest.raises(ValueError, match="3 class probabilities"):
        prediction_fields(MULTI, [0.5, 0.5])


def test_a_non_finite_prediction_is_an_error_and_left_out_of_json() -> None:
    bad = Answer("online", **prediction_fields(MULTI, [math.nan, 0.5, 0.5]), learned=3)
    assert "label" not in bad.probabilities  # type: ignore[operator]
    assert answer_doc(bad, strict_json=True) == {"learned": 3, "error": "non-finite prediction"}
    assert "probabilities" in answer_doc(bad)  # the CLI keeps it beside the error
    assert not answered(answer_doc(bad))
    value = Answer("champion", value=math.inf, version=1)
    assert answer_doc(value, strict_json=True) == {"version": 1, "error": "non-finite prediction"}
    assert answered(answer_doc(Answer("online", value=2.0)))


def test_snapshot_answers_in_the_task_form(tmp_path: Path) -> None:
    settings = load_settings(registry_uri=str(tmp_path / "registry"))
    multi = OnlineLearner(SPEC, task=MULTI)
    regression = OnlineLearner(SPEC, task=Task(kind="regression"))
    for i in range(300):
        x = float(i % 3)
        multi.learn_one({"x": x}, (0.0, 2.0, 5.0)[i % 3] if x < 2 else 5.0)
        regression.learn_one({"x": x}, 1000.0 + 100.0 * x)
    SnapshotStore(tmp_path / "registry" / "online").save(
        OnlineState(learners={"m": multi, "r": regression}), {("features", 0): 600})
    out = predict(settings, "m", {"x": 1.0})["online"]
    assert set(out) == {"probabilities", "label", "learned", "version", "created_at"}
    assert list(out["probabilities"]) == ["0", "2", "5"]
    assert sum(out["probabilities"].values()) == pytest.approx(1.0)
    assert out["label"] == 2  # x = 1 is class 2 (the middle one: one-vs-rest is unsure)
    value = predict(settings, "r", {"x": 2.0})["online"]
    assert set(value) == {"value", "learned", "version", "created_at"}
    assert value["value"] == pytest.approx(1200.0, rel=0.05)


def test_a_regression_champion_answers_a_value(tmp_path: Path) -> None:
    import torch

    from services.model.preprocessing import FORMAT_VERSION
    from services.model.tabular import TabularModel
    from services.registry.manifest import Lineage
    from services.registry.store import ModelRegistry

    settings = load_settings(registry_uri=str(tmp_path / "registry"))
    registry = ModelRegistry(settings.registry_uri)
    module = TabularModel(2, [], [], [], 0.0)  # value and missing flag of "x"
    with torch.no_grad():
        module.mlp[0].weight.copy_(torch.tensor([[2.0, 0.0]]))
        module.mlp[0].bias.fill_(5.0)
    reg = registry.register(
        "m", state_dict=module.state_dict(),
        preprocessing={"format": FORMAT_VERSION, "numeric": [
            {"name": "x", "mean": 0.0, "std": 1.0}], "categorical": []},
        model_meta=module.meta, lineage=Lineage(training_snapshot_id="s"),
        hyperparameters={}, metrics={}, seeds={}, task=Task(kind="regression").to_dict())
    registry.set_alias("m", "champion", reg.version, expected=None)
    champion = predict(settings, "m", {"x": 1.0})["champion"]
    assert set(champion) == {"value", "version", "created_at"}
    assert champion["value"] == pytest.approx(7.0)
