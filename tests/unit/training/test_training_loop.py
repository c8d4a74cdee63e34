from __future__ import annotations

import copy
import dataclasses
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from services.featurespec import ModelSpec
from services.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from services.training.config import TrainingConfig
from services.training.loop import lr_factor, train
from services.training.progress import JsonLinesProgress, NullProgress
from services.training.synthetic import synthetic_frame

ROOT = Path(__file__).resolve().parents[3]
Frames = tuple[pd.DataFrame, pd.DataFrame]


class Recorder(NullProgress):
    """Records steps; sets ``stop`` once ``stop_at`` is reached."""

    def __init__(self, stop: threading.Event | None = None, stop_at: int = -1) -> None:
        self.steps: list[int] = []
        self.evals: list[tuple[int, float]] = []
        self.stop, self.stop_at = stop, stop_at

    def step(self, step: int, loss: float, lr: float) -> None:
        self.steps.append(step)
        if self.stop is not None and step == self.stop_at:
            self.stop.set()

    def evaluate(self, step: int, val_loss: float, best_val_loss: float) -> None:
        self.evals.append((step, val_loss))


def _same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _same_optimizer(a: dict, b: dict) -> bool:
    if a["param_groups"] != b["param_groups"] or a["state"].keys() != b["state"].keys():
        return False
    return all(_same_tensors(a["state"][k], b["state"][k]) for k in a["state"])


def test_schedule_warms_up_then_decays() -> None:
    f = [lr_factor(s, 100, 0.1, 0.05) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert max(f) == pytest.approx(1.0)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(f[10:]))
    assert f[-1] == pytest.approx(0.05, abs=0.01)


def test_training_learns_and_is_deterministic(
    tmp_path: Path, spec: ModelSpec, frames: Frames, config: TrainingConfig
) -> None:
    a = train(tmp_path / "a", spec, *frames, config, progress=None)
    b = train(tmp_path / "b", spec, *frames, config, progress=None)
    assert a.status == "completed" and a.step == 60
    assert _same_tensors(a.state_dict, b.state_dict)
    assert a.metrics["val_auc"] > 0.7
    assert a.history[-1]["val_loss"] < a.history[0]["val_loss"]
    assert [c.step for c in list_checkpoints(tmp_path / "a")] == [20, 40, 60]


def test_stop_event_then_resume_continues_identically(
    tmp_path: Path, spec: ModelSpec, frames: Frames, config: TrainingConfig
) -> None:
    reference = train(tmp_path / "ref", spec, *frames, config, progress=None)
    stop = threading.Event()
    first = train(
        tmp_path / "run", spec, *frames, config, progress=Recorder(stop, 27), stop_event=stop
    )
    assert first.status == "interrupted" and first.step == 27
    emergency = latest_checkpoint(tmp_path / "run")
    assert emergency is not None and emergency.step == 27
    saved = load_checkpoint(emergency)

    seen: dict = {}
    real_load = torch.optim.AdamW.load_state_dict

    def spy(self, state_dict):  # type: ignore[no-untyped-def]
        real_load(self, state_dict)
        seen["optimizer"] = copy.deepcopy(self.state_dict())

    recorder = Recorder()
    torch.optim.AdamW.load_state_dict = spy  # type: ignore[method-assign]
    try:
        resumed = train(tmp_path / "run", spec, *frames, config, progress=recorder)
    finally:
        torch.optim.AdamW.load_state_dict = real_load  # type: ignore[method-assign]
    assert resumed.resumed_from_step == 27 and recorder.steps[0] == 28
    assert resumed.run_id == first.run_id
    assert _same_optimizer(seen["optimizer"], saved["optimizer"])
    assert resumed.status == "completed"
    assert _same_tensors(resumed.state_dict, reference.state_dict)
    assert resumed.best_val_loss == reference.best_val_loss


def test_sigkill_mid_run_resumes_at_checkpoint(
    tmp_path: Path, spec: ModelSpec, frames: Frames, config: TrainingConfig
) -> None:
    config = config.with_overrides({"checkpoint": {"every_steps": 10}})
    data = tmp_path / "data"
    data.mkdir()
    frames[0].to_parquet(data / "train.parquet")
    frames[1].to_parquet(data / "val.parquet")
    job = {
        "spec": {
            "model": spec.model,
            "entity": spec.entity,
            "features": [dataclasses.asdict(f) for f in spec.features],
        },
        "config": config.model_dump(mode="json"),
    }
    (data / "job.json").write_text(json.dumps(job))
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("train_worker.py")), str(run), str(data)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        while not list_checkpoints(run) and time.monotonic() < deadline:
            assert proc.poll() is None, "worker exited early"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    killed_at = latest_checkpoint(run)
    assert killed_at is not None and 10 <= killed_at.step < 60
    saved = load_checkpoint(killed_at)

    # the reference keeps every checkpoint (only retention differs), to compare at the kill
    reference = train(tmp_path / "ref", spec, *frames,
                      config.with_overrides({"checkpoint": {"keep": 10}}), progress=None)
    # the optimizer state in the checkpoint equals the reference run's at that step:
    # every tensor of every parameter's state (step, exp_avg, exp_avg_sq) and the groups
    ref_ckpt = load_checkpoint(next(c for c in list_checkpoints(tmp_path / "ref")
                                    if c.step == killed_at.step))
    assert saved["optimizer"]["state"], "the checkpoint holds no optimizer state"
    assert _same_optimizer(ref_ckpt["optimizer"], saved["optimizer"])

    recorder = Recorder()
    resumed = train(run, spec, *frames, config, progress=recorder)
    assert resumed.resumed_from_step == killed_at.step
    assert recorder.steps[0] == killed_at.step + 1
    assert _same_tensors(resumed.state_dict, reference.state_dict)


def test_finished_run_redelivered_returns_without_training(
    tmp_path: Path, spec: ModelSpec, frames: Frames, config: TrainingConfig
) -> None:
    first = train(tmp_path, spec, *frames, config, progress=None)
    recorder = Recorder()
    again = train(tmp_path, spec, *frames, config, progress=recorder)
    assert recorder.steps == [] and again.step == first.step
    assert _same_tensors(again.state_dict, first.state_dict)
    assert len(list_checkpoints(tmp_path)) == 3


def test_early_stopping_keeps_best_weights(
    tmp_path: Path, spec: ModelSpec, frames: Frames, config: TrainingConfig
) -> None:
    config = config.with_overrides(
        {
            "max_steps": 400,
            "eval_every_steps": 5,
            "optimizer": {"lr": 0.05},
            "early_stopping": {"patience": 2, "min_delta": 0.01},
        }
    )
    result = train(tmp_path, spec, *frames, config, progress=None)
    assert result.status == "early_stopped" and result.step < 400
    losses = [h["val_loss"] for h in result.history]
    # best = the last evaluation that improved by more than min_delta; its weights are kept
    assert result.best_val_loss in losses
    assert min(losses) <= result.best_val_loss <= min(losses) + 0.01
    assert result.metrics["val_loss"] == pytest.approx(result.best_val_loss, rel=1e-5)


def test_fine_tune_keeps_parent_scaling_and_extends_vocab(
    tmp_path: Path, spec: ModelSpec, frames: Frames, config: TrainingConfig
) -> None:
    parent = train(tmp_path / "parent", spec, *frames, config, progress=None)
    shifted = synthetic_frame(800, spec, seed=11, shift=1.5, start="2026-03-01")
    cut = int(len(shifted) * 0.8)
    child = train(
        tmp_path / "child",
        spec,
        shifted.iloc[:cut],
        shifted.iloc[cut:],
        config.with_overrides({"max_steps": 5}),
        init_from=parent,
        progress=None,
    )
    assert child.fine_tuned
    assert child.preprocessor.numeric == parent.preprocessor.numeric
    for old, new in zip(
        parent.preprocessor.categorical, child.preprocessor.categorical, strict=True
    ):
        assert new.categories[: len(old.categories)] == old.categories
    assert any(
        len(n.categories) > len(o.categories)
        for o, n in zip(
            parent.preprocessor.categorical, child.preprocessor.categorical, strict=True
        )
    )
    assert child.config.optimizer.lr == config.optimizer.lr  # scaled at use, config unchanged


def test_json_progress_lines_when_not_a_tty(
    tmp_path: Path, spec: ModelSpec, frames: Frames, config: TrainingConfig
) -> None:
    stream = io.StringIO()
    train(
        tmp_path,
        spec,
        *frames,
        config.with_overrides({"max_steps": 20}),
        progress=JsonLinesProgress(stream),
    )
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events[0] == "train.start" and events[-1] == "train.finish"
    assert "train.eval" in events and "train.checkpoint" in events
