"""The online learner cannot be poisoned: clipped inputs, refused non-finite updates."""

from __future__ import annotations

import math
import pickle

from services.featurespec import FeatureSpec, ModelSpec
from services.online.learner import LearnerConfig, OnlineLearner

SPEC = ModelSpec("fraud", "user", (FeatureSpec("amount", "numeric"),
                                   FeatureSpec("age", "numeric")))


def _train(learner: OnlineLearner, n: int = 300) -> None:
    for i in range(n):
        x = float(i % 10)
        learner.learn_one({"amount": x, "age": 30.0 + i % 7}, 1.0 if x > 4 else 0.0)


def test_extreme_amounts_leave_predictions_finite_and_useful() -> None:
    learner = OnlineLearner(SPEC)
    _train(learner)
    learner.learn_one({"amount": 1e308, "age": 30.0}, 1.0)
    learner.learn_one({"amount": -1e308, "age": 30.0}, 0.0)
    for mode in ("never", "always"):
        batch = OnlineLearner(SPEC, LearnerConfig(mini_batch=mode))
        _train(batch)
        batch.learn_many([{"amount": 1e308, "age": 1.0}, {"amount": -1e308, "age": 1.0}],
                         [1.0, 0.0])
        assert batch.healthy
        assert math.isfinite(batch.predict_proba({"amount": 9.0, "age": 30.0}))
    assert learner.healthy
    high = learner.predict_proba({"amount": 9.0, "age": 30.0})
    low = learner.predict_proba({"amount": 0.0, "age": 30.0})
    assert math.isfinite(high) and math.isfinite(low)
    assert high > 0.5 > low  # it still separates the classes it learned


def test_infinite_inputs_are_left_out_and_counted() -> None:
    learner = OnlineLearner(SPEC)
    learner.learn_one({"amount": math.inf, "age": 30.0}, 1.0)
    learner.learn_one({"amount": -math.inf, "age": math.inf}, 0.0)
    assert learner.refused_values == 3
    assert learner.healthy


def test_a_non_finite_state_is_restored_from_the_last_good_copy() -> None:
    learner = OnlineLearner(SPEC, LearnerConfig(good_every=10))
    _train(learner, 100)
    good = learner.predict_proba({"amount": 9.0, "age": 30.0})
    estimator = learner.pipeline.steps["LogisticRegression"]
    estimator._weights["amount"] = math.nan  # as if an update had overflowed
    assert not learner.healthy
    learner.learn_one({"amount": 1.0, "age": 30.0}, 0.0)
    assert learner.healthy
    assert learner.refused_updates == 1
    assert learner.predict_proba({"amount": 9.0, "age": 30.0}) == good


def test_a_pickled_learner_restores_without_a_second_copy_of_its_state() -> None:
    learner = OnlineLearner(SPEC)
    _train(learner, 50)
    clone = pickle.loads(pickle.dumps(learner))
    assert clone.healthy and clone._good is not None
    assert len(pickle.dumps(learner)) < 2 * len(pickle.dumps(learner.pipeline)) + 20_000
