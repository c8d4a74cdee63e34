"""Online learner: progressive accuracy, drift detection, mini-batch path, configuration."""

from __future__ import annotations

import itertools

import pytest
from river import datasets, linear_model, tree
from river.datasets import synth

from services.featurespec import FeatureSpec, ModelSpec
from services.online.learner import (
    LearnerConfig,
    OnlineLearner,
    RiverNameError,
    build_river_object,
    resolve_river_class,
)

AGRAWAL_CATEGORICAL = ("elevel", "car", "zipcode")
AGRAWAL = ModelSpec(
    "agrawal",
    "id",
    tuple(
        FeatureSpec(n, "categorical" if n in AGRAWAL_CATEGORICAL else "numeric")
        for n in ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue",
                  "hyears", "loan")
    ),
)
SEA = ModelSpec("sea", "id", tuple(FeatureSpec(str(i), "numeric") for i in range(3)))
DRIFT_AT = 3000
MAX_DELAY = 400  # stated: detection within 400 labelled events of the drift's centre


def _events(stream: datasets.base.Dataset, n: int) -> list[tuple[dict, float]]:
    return [({str(k): v for k, v in x.items()}, float(y)) for x, y in itertools.islice(stream, n)]


def _run(learner: OnlineLearner, events: list[tuple[dict, float]]) -> list[int]:
    return [o.drift.learned for i, (x, y) in enumerate(events)
            if (o := learner.learn_one(x, y, f"e{i}")).drift is not None]


def _agrawal_drift(seed: int) -> synth.ConceptDriftStream:
    return synth.ConceptDriftStream(
        stream=synth.Agrawal(classification_function=0, seed=seed),
        drift_stream=synth.Agrawal(classification_function=4, seed=seed),
        position=DRIFT_AT, width=100, seed=seed,
    )


def test_progressive_accuracy_on_sea_with_noise() -> None:
    learner = OnlineLearner(SEA)
    drifts = _run(learner, _events(synth.SEA(variant=0, noise=0.1, seed=1), 6000))
    m = learner.metrics()
    assert m["learned"] == 6000
    assert m["rolling_accuracy"] > 0.85  # noise 10%: ceiling 0.90
    assert m["rolling_roc_auc"] > 0.85
    assert 0.0 < m["rolling_log_loss"] < 0.5
    assert drifts == []


def test_configured_tree_learns_agrawal() -> None:
    cfg = LearnerConfig(estimator="tree.HoeffdingAdaptiveTreeClassifier",
                        params={"grace_period": 100, "seed": 1})
    learner = OnlineLearner(AGRAWAL, cfg)
    assert isinstance(learner.pipeline.steps["HoeffdingAdaptiveTreeClassifier"],
                      tree.HoeffdingAdaptiveTreeClassifier)
    assert not learner.supports_many
    _run(learner, _events(synth.Agrawal(classification_function=0, seed=2), 3000))
    assert learner.metrics()["rolling_accuracy"] > 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_concept_drift_detected_after_the_drift_point(seed: int) -> None:
    learner = OnlineLearner(AGRAWAL)
    drifts = _run(learner, _events(_agrawal_drift(seed), 2 * DRIFT_AT))
    assert drifts, "no drift signal"
    first = drifts[0]
    assert DRIFT_AT - 50 <= first <= DRIFT_AT + MAX_DELAY  # width 100: drift begins at 2950
    signals = learner.drain_signals()
    assert [s.learned for s in signals] == drifts and learner.drain_signals() == []
    assert signals[0].error_after > signals[0].error_before
    assert signals[0].detector == "drift.ADWIN"


@pytest.mark.parametrize("seed", [0, 1])
def test_no_drift_signal_on_stationary_stream(seed: int) -> None:
    learner = OnlineLearner(AGRAWAL)
    assert _run(learner, _events(synth.Agrawal(classification_function=0, seed=seed),
                                 2 * DRIFT_AT)) == []


def test_learn_many_with_batches_of_one_equals_learn_one() -> None:
    events = _events(synth.SEA(variant=0, noise=0.1, seed=3), 500)
    one, many = OnlineLearner(SEA), OnlineLearner(SEA)
    assert many.supports_many
    a = [one.learn_one(x, y) for x, y in events]
    b = [o for x, y in events for o in many.learn_many([x], [y])]
    assert [o.proba for o in a] == pytest.approx([o.proba for o in b], rel=1e-12)
    probe = events[0][0]
    assert one.predict_proba(probe) == pytest.approx(many.predict_proba(probe), rel=1e-12)
    assert one.metrics() == pytest.approx(many.metrics(), rel=1e-9)


def test_learn_many_minibatch_is_progressive_and_learns() -> None:
    events = _events(synth.SEA(variant=0, noise=0.1, seed=4), 4000)
    learner = OnlineLearner(SEA)
    first = learner.learn_many([x for x, _ in events[:100]], [y for _, y in events[:100]])
    assert all(o.proba == pytest.approx(0.5) for o in first)  # predicted before learning
    for i in range(100, 4000, 100):
        batch = events[i : i + 100]
        learner.learn_many([x for x, _ in batch], [y for _, y in batch])
    assert learner.learned == 4000
    assert learner.metrics()["rolling_accuracy"] > 0.8


def test_missing_values_take_the_per_event_path() -> None:
    spec = ModelSpec("m", "id", (FeatureSpec("a", "numeric"), FeatureSpec("c", "categorical")))
    learner, ref = OnlineLearner(spec), OnlineLearner(spec)
    rows = [{"a": 1.0, "c": "x"}, {"a": None, "c": "y"}, {"a": 2.0}]
    labels = [1.0, 0.0, 1.0]
    out = learner.learn_many(rows, labels, ["e1", "e2", "e3"])
    ref_out = [ref.learn_one(r, y) for r, y in zip(rows, labels, strict=True)]
    assert [o.proba for o in out] == [o.proba for o in ref_out]
    assert [o.event_id for o in out] == ["e1", "e2", "e3"]


def test_categorical_features_are_one_hot_encoded() -> None:
    spec = ModelSpec("m", "id", (FeatureSpec("c", "categorical"),))
    learner = OnlineLearner(spec)
    for _ in range(300):
        learner.learn_one({"c": "yes"}, 1.0)
        learner.learn_one({"c": "no"}, 0.0)
    assert learner.predict_proba({"c": "yes"}) > 0.7
    assert learner.predict_proba({"c": "no"}) < 0.3


def test_non_binary_label_refused() -> None:
    with pytest.raises(ValueError):
        OnlineLearner(SEA).learn_one({"0": 1.0}, 2.0)


def test_river_names_resolved_only_inside_river() -> None:
    assert resolve_river_class("linear_model.LogisticRegression", object) is (
        linear_model.LogisticRegression)
    for bad in ("os.System", "subprocess.Popen", "linear_model.LinearRegression.__class__",
                "_private.Thing", "LogisticRegression", "linear_model.nope", "utils.Rolling"):
        with pytest.raises(RiverNameError):
            resolve_river_class(bad, (linear_model.LogisticRegression.__mro__[1],)
                                if bad == "utils.Rolling" else object)
    with pytest.raises(RiverNameError):  # a regressor is not a classifier
        LearnerConfig(estimator="linear_model.LinearRegression").make_estimator()
    with pytest.raises(RiverNameError):
        LearnerConfig(drift_detector="tree.HoeffdingTreeClassifier").make_detector()


def test_nested_river_params_are_built() -> None:
    cfg = LearnerConfig(params={"optimizer": {"river": "optim.SGD", "params": {"lr": 0.05}}},
                        drift_detector="PageHinkley", drift_params={"mode": "up"})
    learner = OnlineLearner(SEA, cfg)
    est = learner.pipeline.steps["LogisticRegression"]
    assert type(est.optimizer).__name__ == "SGD"
    assert type(learner.detector).__name__ == "PageHinkley"
    with pytest.raises(RiverNameError):
        build_river_object("linear_model.LogisticRegression",
                           {"optimizer": {"river": "os.system"}}, object)


def test_long_batches_are_learned_in_pieces_of_max_batch() -> None:
    events = _events(synth.SEA(variant=0, noise=0.1, seed=5), 600)
    whole = OnlineLearner(SEA, LearnerConfig(max_batch=200))
    pieces = OnlineLearner(SEA, LearnerConfig(max_batch=200))
    a = whole.learn_many([x for x, _ in events], [y for _, y in events])
    b = [o for i in range(0, 600, 200)
         for o in pieces.learn_many([x for x, _ in events[i:i + 200]],
                                    [y for _, y in events[i:i + 200]])]
    assert [o.proba for o in a] == pytest.approx([o.proba for o in b], rel=1e-12)
    assert a[200].proba != pytest.approx(0.5)  # the second piece saw the first one learned


def test_mini_batch_auto_takes_the_per_event_path_with_categorical_features() -> None:
    assert not OnlineLearner(AGRAWAL).supports_many
    assert OnlineLearner(AGRAWAL, LearnerConfig(mini_batch="always")).supports_many
    assert OnlineLearner(SEA).supports_many
    assert not OnlineLearner(SEA, LearnerConfig(mini_batch="never")).supports_many
