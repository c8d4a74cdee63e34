"""DDP on gloo: two CPU processes train to the same weights as one process."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from services.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from services.training.config import load_config
from services.training.loop import train
from services.training.synthetic import synthetic_frame, synthetic_spec

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.integration
@pytest.mark.slow
def test_two_processes_match_one(tmp_path: Path) -> None:
    spec = synthetic_spec(n_numeric=4, n_categorical=1)
    train_df = synthetic_frame(640, spec, seed=1)  # divisible by the global batch
    val_df = synthetic_frame(200, spec, seed=2)
    train_df.to_parquet(tmp_path / "train.parquet")
    val_df.to_parquet(tmp_path / "val.parquet")
    spec_json = {
        "model": spec.model,
        "entity": spec.entity,
        "features": [dataclasses.asdict(f) for f in spec.features],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec_json))
    overrides = {
        "batch_size": 64,
        "max_steps": 40,
        "eval_every_steps": 10,
        "optimizer": {"lr": 0.005},
        "architecture": {"hidden_sizes": [16], "dropout": 0.0},  # no per-rank randomness
        "checkpoint": {"every_steps": 20},
    }
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "services.training.distributed",
        "--run-dir", str(tmp_path / "ddp"), "--spec", str(tmp_path / "spec.json"),
        "--train", str(tmp_path / "train.parquet"), "--val", str(tmp_path / "val.parquet"),
        "--overrides", json.dumps(overrides), "--result", str(tmp_path / "result.json"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 40

    single = train(tmp_path / "one", spec, train_df, val_df, load_config(overrides=overrides),
                   progress=None)  # fmt: skip
    ddp_ckpt = latest_checkpoint(tmp_path / "ddp")
    assert ddp_ckpt is not None
    ddp_state = load_checkpoint(ddp_ckpt)
    one_state = load_checkpoint(latest_checkpoint(tmp_path / "one"))  # type: ignore[arg-type]
    for key, tensor in one_state["model"].items():
        torch.testing.assert_close(ddp_state["model"][key], tensor, rtol=1e-4, atol=1e-5)
    assert summary["best_val_loss"] == pytest.approx(single.best_val_loss, rel=1e-4)
    # checkpoints written once, by rank 0: one file per step, one report per write
    assert [c.step for c in list_checkpoints(tmp_path / "ddp")] == [20, 40]
    written = [line for line in proc.stderr.splitlines() if '"train.checkpoint"' in line]
    assert len(written) == 2
