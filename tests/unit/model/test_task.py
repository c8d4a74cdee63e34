"""The task core: label checks and per-event losses for binary, multiclass, regression."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from services.model.task import LabelError, Task

BINARY = Task()
MULTI = Task(kind="multiclass", classes=(0, 1, 2, 5))
REGRESSION = Task.model_validate("regression")


@pytest.mark.parametrize(("task", "label"), [
    (BINARY, 3), (BINARY, 0.5), (BINARY, float("nan")), (MULTI, 2.5), (MULTI, 3),
    (MULTI, float("inf")), (REGRESSION, float("nan")), (REGRESSION, "1.0"), (BINARY, True),
])
def test_labels_outside_the_task_are_named(task: Task, label: object) -> None:
    assert task.label_problem(label) is not None
    with pytest.raises(LabelError, match=r"^y: "):
        task.check_labels([label] if isinstance(label, str | bool) else np.array([0.0, label]),
                          "y")


@pytest.mark.parametrize(("task", "labels"), [
    (BINARY, [0, 1, 1.0]), (MULTI, [0, 5, 2.0]), (REGRESSION, [-3.5, 1e6, 0]),
])
def test_labels_of_the_task_pass(task: Task, labels: list[float]) -> None:
    task.check_labels(np.array(labels, dtype=float))
    assert all(task.label_problem(v) is None for v in labels)


def test_check_labels_counts_the_bad_rows() -> None:
    with pytest.raises(LabelError, match=r"got 2\.0 \(2 of 4 rows\)"):
        BINARY.check_labels(np.array([0, 2, 1, 7], dtype=float), "is_fraud")


def test_event_loss_per_task_matches_its_formula() -> None:
    assert BINARY.event_loss(1.0, 0.8) == pytest.approx(-math.log(0.8))
    assert BINARY.event_loss(0.0, 0.8) == pytest.approx(-math.log(0.2))
    assert MULTI.event_loss(5.0, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(-math.log(0.4))
    assert MULTI.event_loss(1.0, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(-math.log(0.2))
    assert REGRESSION.event_loss(2.0, 3.5) == pytest.approx(2.25)
    assert BINARY.event_loss(1.0, 0.0) == pytest.approx(-math.log(1e-7))  # clipped


def test_batch_loss_equals_event_losses() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=20)
    labels = rng.choice(MULTI.classes, size=20).astype(float)
    expected = [MULTI.event_loss(y, p) for y, p in zip(labels, probs, strict=True)]
    np.testing.assert_allclose(MULTI.batch_loss(labels, probs), expected)
    p = rng.random(20)
    y = (rng.random(20) > 0.5).astype(float)
    np.testing.assert_allclose(BINARY.batch_loss(y, p),
                               [BINARY.event_loss(a, b) for a, b in zip(y, p, strict=True)])


def test_event_loss_refuses_a_label_of_another_task() -> None:
    with pytest.raises(LabelError):
        BINARY.event_loss(2.0, 0.5)
    with pytest.raises(ValueError, match="4 class probabilities"):
        MULTI.event_loss(0.0, [0.5, 0.5])


@pytest.mark.parametrize("data", [
    {"kind": "multiclass", "classes": [1]}, {"kind": "multiclass", "classes": [1, 1, 2]},
    {"kind": "binary", "classes": [1, 2]}, {"kind": "regression", "classes": [0, 1]},
    {"kind": "ranking"},
])
def test_declarations_that_cannot_be_a_task_fail(data: dict) -> None:
    with pytest.raises(ValidationError):
        Task.model_validate(data)


def test_manifest_round_trip_and_old_manifests_are_binary() -> None:
    assert Task.from_manifest(MULTI.to_dict()) == MULTI
    assert Task.from_manifest(None) == BINARY
    assert (MULTI.n_outputs, BINARY.n_outputs, REGRESSION.n_outputs) == (4, 1, 1)
