"""Training every task through the real path (loop -> registry -> Scorer), small and fast.

Each test knows the bug it catches: a head of the wrong width, a loss on raw instead of
standardised targets (or a prediction left in standardised units), validation metrics
that disagree with the task's per-event loss the shadow evaluator pairs, a bad label
trained around or registered, a factory that cannot be rebuilt or fine-tuned.
"""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from samples.user_factories import ONE_HOT_SOURCE

from services.featurespec import ModelSpec
from services.model.scoring import Scorer
from services.model.task import LabelError, Task
from services.registry.store import ModelRegistry
from services.training.config import TrainingConfig
from services.training.data import build_training_frames
from services.training.loop import train
from services.training.objective import VALIDATION_METRICS, loss, macro_f1
from services.training.runner import TrainingJob, run_job
from services.training.synthetic import synthetic_frame

MULTI = Task(kind="multiclass", classes=(3, 5, 7))
REGRESSION = Task(kind="regression")

FACTORY_SOURCE = '''
import torch
from torch import nn


class Net(nn.Module):
    """A user's model: embeddings + one hidden layer + the task's outputs."""

    def __init__(self, schema):
        super().__init__()
        self.embs = nn.ModuleList(nn.Embedding(c, 4) for c in schema.cardinalities)
        width = schema.n_numeric_inputs + 4 * len(schema.cardinalities)
        self.body = nn.Sequential(nn.Linear(width, 16), nn.ReLU(),
                                  nn.Linear(16, schema.n_outputs))
        self.squeeze = schema.task != "multiclass"

    def forward(self, numeric, categorical):
        parts = [numeric] + [e(categorical[:, j]) for j, e in enumerate(self.embs)]
        out = self.body(torch.cat(parts, dim=1))
        return out.squeeze(1) if self.squeeze else out


def build(schema):
    return Net(schema)

''' + ONE_HOT_SOURCE


def _frames(spec: ModelSpec, task: Task, n: int = 1200, **kw: object) -> tuple[pd.DataFrame,
                                                                               pd.DataFrame]:
    return build_training_frames(
        spec, synthetic_frame(n, spec, seed=3, task=task, **kw), None, replay_ratio=0.0,
        validation_share=0.25, time_column="event_timestamp", seed=0,
    )


def _register(registry: ModelRegistry, result: object, task: Task) -> Scorer:
    from services.registry.manifest import Lineage

    registry.register(
        "m", state_dict=result.state_dict, preprocessing=result.preprocessing,  # type: ignore[attr-defined]
        model_meta=result.model_meta, lineage=Lineage(training_snapshot_id="s"),  # type: ignore[attr-defined]
        hyperparameters={}, metrics={}, seeds={}, task=task.to_dict(),
    )
    return Scorer.from_loaded(registry.load("m", 1))


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"user_model_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield f"{name}:build"
    sys.modules.pop(name, None)


def test_multiclass_trains_k_logits_and_scores_probabilities(
    tmp_path: Path, spec: ModelSpec, config: TrainingConfig
) -> None:
    train_df, val_df = _frames(spec, MULTI)
    result = train(tmp_path / "run", spec, train_df, val_df, config, task=MULTI, progress=None)
    assert set(VALIDATION_METRICS["multiclass"]) <= result.metrics.keys()
    assert "val_auc" not in result.metrics
    majority = val_df["label"].value_counts(normalize=True).max()
    assert result.metrics["val_accuracy"] > majority + 0.1  # it learned, not the prior
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]

    scorer = _register(ModelRegistry(str(tmp_path / "reg")), result, MULTI)
    assert scorer.task == MULTI
    probs = scorer.predict(val_df)
    assert probs.shape == (len(val_df), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    # the training loop's val_loss is the mean of the per-event loss the shadow pairs
    per_event = MULTI.batch_loss(val_df["label"].to_numpy(), probs)
    assert result.metrics["val_loss"] == pytest.approx(per_event.mean(), rel=1e-4)
    predicted = np.asarray(MULTI.classes)[probs.argmax(axis=1)]
    assert result.metrics["val_accuracy"] == pytest.approx(
        (predicted == val_df["label"].to_numpy()).mean())


def test_regression_learns_standardised_and_scores_in_label_units(
    tmp_path: Path, spec: ModelSpec, config: TrainingConfig
) -> None:
    train_df, val_df = _frames(spec, REGRESSION)
    result = train(tmp_path / "run", spec, train_df, val_df, config, task=REGRESSION,
                   progress=None)
    target = result.preprocessor.target
    assert target is not None  # fitted on the training part only
    assert target.mean == pytest.approx(train_df["label"].mean())
    assert set(VALIDATION_METRICS["regression"]) <= result.metrics.keys()
    labels = val_df["label"].to_numpy()
    assert result.metrics["val_mse"] < 0.5 * labels.var()  # beats predicting the mean

    scorer = _register(ModelRegistry(str(tmp_path / "reg")), result, REGRESSION)
    predictions = scorer.predict(val_df)
    assert predictions.shape == (len(val_df),)
    assert abs(predictions.mean() - labels.mean()) < 0.2 * labels.std()  # label units
    mse = float(np.mean((predictions - labels) ** 2))
    assert result.metrics["val_loss"] == pytest.approx(mse, rel=1e-4)
    assert result.metrics["val_mse"] == pytest.approx(mse, rel=1e-4)
    assert result.metrics["val_mae"] == pytest.approx(np.abs(predictions - labels).mean(),
                                                      rel=1e-4)


def test_labels_of_another_task_are_refused_and_nothing_registered(
    tmp_path: Path, spec: ModelSpec, config: TrainingConfig
) -> None:
    frame = synthetic_frame(600, spec, seed=1, task=Task(kind="multiclass",
                                                         classes=tuple(range(7))))
    registry = ModelRegistry(str(tmp_path / "reg"))
    job = TrainingJob("synth", "initial:synth:s", "manual", "s", fresh=frame)
    with pytest.raises(LabelError, match=r"^label: a binary label is 0 or 1, got [2-6]"):
        run_job(job, spec, registry, tmp_path / "runs", config, progress=None)  # binary
    assert registry.list_versions("synth") == []

    frame["label"] = frame["label"].astype(np.float64)
    frame.loc[frame.index[5], "label"] = float("inf")
    with pytest.raises(LabelError, match="label: a finite number is expected, got inf"):
        run_job(job, spec, registry, tmp_path / "runs", config, progress=None,
                task=REGRESSION)
    assert registry.list_versions("synth") == []


def test_factory_model_trains_registers_rebuilds_and_fine_tunes(
    tmp_path: Path, spec: ModelSpec, config: TrainingConfig, factory: str
) -> None:
    registry = ModelRegistry(str(tmp_path / "reg"))
    old = synthetic_frame(900, spec, seed=1, task=REGRESSION)
    first = run_job(TrainingJob("synth", "initial", "manual", "snap-a", fresh=old), spec,
                    registry, tmp_path / "runs", config, progress=None, task=REGRESSION,
                    factory=factory)
    assert first.version is not None and first.result is not None
    manifest = first.version.manifest
    assert manifest.task == {"kind": "regression", "classes": []}
    assert manifest.architecture["factory"] == factory
    assert len(manifest.architecture["source_sha256"]) == 64

    parent = registry.load("synth", 1)
    scorer = Scorer.from_loaded(parent)
    assert type(scorer.module).__name__ == "Net"  # the user's module, rebuilt
    np.testing.assert_allclose(
        scorer.predict(old.head(20)),
        Scorer("synth", 0, first.result.model, first.result.preprocessor, REGRESSION).predict(
            old.head(20)), rtol=1e-6)

    fresh = synthetic_frame(600, spec, seed=2, shift=1.0, start="2026-02-01", task=REGRESSION)
    child = run_job(TrainingJob("synth", "req-1", "covariate", "snap-b", fresh=fresh,
                                parent=parent, replay=old), spec, registry, tmp_path / "runs",
                    config.with_overrides({"max_steps": 10}), progress=None, task=REGRESSION,
                    factory=factory)
    assert child.result is not None and child.result.fine_tuned
    # the parent's scaling and target scale; its vocabularies with the new categories
    # appended, and the user's module grown to match (else a new id is out of range)
    before, after = parent_preprocessor(parent), child.result.preprocessor
    assert (after.numeric, after.target) == (before.numeric, before.target)
    for old_vocab, vocab in zip(before.categorical, after.categorical, strict=True):
        assert vocab.categories[: len(old_vocab.categories)] == old_vocab.categories
    assert sum(v.cardinality for v in after.categorical) > sum(
        v.cardinality for v in before.categorical)
    child_meta = child.version.manifest.architecture  # type: ignore[union-attr]
    assert [len(v) + 1 for v in child_meta["schema"]["vocabularies"]] == list(
        after.cardinalities)
    child_scorer = Scorer.from_loaded(registry.load("synth", 2))
    assert np.isfinite(child_scorer.predict(fresh)).all()
    assert child.version is not None and child.version.manifest.lineage.parent_version == 1

    with pytest.raises(ValueError, match=r"built by .*:build, this model's factory is the "
                                         r"built-in model"):
        run_job(TrainingJob("synth", "req-2", "covariate", "snap-b", fresh=fresh,
                            parent=parent, replay=old), spec, registry, tmp_path / "runs",
                config, progress=None, task=REGRESSION)
    with pytest.raises(ValueError, match=r"trained for .*regression.*binary"):
        run_job(TrainingJob("synth", "req-3", "covariate", "snap-b",
                            fresh=synthetic_frame(600, spec, seed=2), parent=parent,
                            replay=None), spec, registry, tmp_path / "runs", config,
                progress=None, factory=factory)


def test_a_factory_module_that_cannot_grow_fine_tunes_with_the_parents_vocabularies(
    tmp_path: Path, spec: ModelSpec, config: TrainingConfig, factory: str
) -> None:
    # catches: the preprocessing extended while the module keeps the parent's width (a new
    # category's id out of range, the run crashes) for a module that cannot be grown
    one_hot = factory.replace(":build", ":one_hot")
    old_train, old_val = _frames(spec, REGRESSION, n=400)
    short = config.with_overrides({"max_steps": 5})
    parent = train(tmp_path / "parent", spec, old_train, old_val, short, task=REGRESSION,
                   factory=one_hot, progress=None)
    new_train, new_val = _frames(spec, REGRESSION, n=400, shift=1.5)
    child = train(tmp_path / "child", spec, new_train, new_val, short, task=REGRESSION,
                  factory=one_hot, init_from=parent, progress=None)
    assert child.fine_tuned and child.step == 5
    assert child.preprocessor == parent.preprocessor  # new categories stay unknown
    assert child.model_meta["schema"] == parent.model_meta["schema"]


def parent_preprocessor(parent: object) -> object:
    from services.model.preprocessing import Preprocessor

    return Preprocessor.from_dict(parent.preprocessing)  # type: ignore[attr-defined]


def test_objective_pieces() -> None:
    # macro F1 by hand: class 0: tp 1 fp 1 fn 0 -> 2/3; class 1: tp 1 fp 0 fn 1 -> 2/3;
    # class 2 only predicted: 0
    assert macro_f1(np.array([0, 1, 1, 3]), np.array([0, 1, 0, 2])) == pytest.approx(
        (2 / 3 + 2 / 3 + 0 + 0) / 4)
    # K logits under CPU bfloat16 autocast: the loss is computed in float32
    linear = torch.nn.Linear(4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear(torch.randn(8, 4))
    assert out.dtype == torch.bfloat16
    value = loss(MULTI, out, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    assert value.dtype == torch.float32 and torch.isfinite(value)
