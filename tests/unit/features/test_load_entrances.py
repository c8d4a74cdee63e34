"""Labels are checked against the model's task where they enter: the ingest's labels topic."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from services.features.feast_repo import ModelLayout
from services.features.generate import Generator, GeneratorConfig
from services.features.ingest import IngestBuffer, Reject
from services.model.task import Task

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_label_that_does_not_fit_the_models_task_is_an_invalid_value(
    layout: ModelLayout,
) -> None:
    feature, label = next(Generator(GeneratorConfig(seed=5)).live(T0, 1))
    three = msgspec.structs.replace(label, label=2.0)
    binary = IngestBuffer({"fraud": layout})  # no task declared: binary
    assert binary.add_features(feature) is None
    assert binary.add_label(three) == Reject("invalid_value",
                                             "label: a binary label is 0 or 1, got 2.0")
    assert binary.rows == 2  # the feature event in two views, no label row
    multiclass = IngestBuffer({"fraud": layout},
                              tasks={"fraud": Task(kind="multiclass", classes=(0, 1, 2))})
    assert multiclass.add_features(feature) is None
    assert multiclass.add_label(three) is None
    half = multiclass.add_label(msgspec.structs.replace(label, label=0.5))
    assert isinstance(half, Reject) and half.reason == "invalid_value"
    assert "classes [0, 1, 2], got 0.5" in half.detail
    regression = IngestBuffer({"fraud": layout}, tasks={"fraud": Task(kind="regression")})
    regression.add_features(feature)
    assert regression.add_label(msgspec.structs.replace(label, label=-12.5)) is None
