"""Fine-tuning after a covariate shift vs training from scratch, per task, and loop throughput.

1. For each task (binary and multiclass with the built-in model, regression with a
   user-style factory, ``benchmarks.finetune_model:build``): a parent model is trained
   on the old distribution. The inputs then shift (numeric means move and widen,
   category shares tilt towards categories never seen before; the labelling rule stays
   the same). On the new training set (fresh window + replay of the old data,
   time-split, as the trainer builds it) we train once from scratch and once
   fine-tuning from the parent, same config, same validation set.
   Target, per task: fine-tuning reaches the scratch run's final (best) validation
   loss within 30% of the scratch run's optimizer steps (a ratio, same run).
2. Training-loop steps/s (MLP 64-64, batch 256, 20 numeric features) with 1 and 2
   torch threads.

Writes benchmarks/results/finetune.json. ``--quick`` shrinks everything for a smoke run;
``--tasks`` picks tasks. Run from the repository root (``python -m
benchmarks.bench_finetune``, or as a script: the root is put on ``sys.path`` so the
factory module imports, as a user's package would be installed).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.model.scoring import predict
from services.model.task import Task
from services.training.config import load_config
from services.training.data import build_training_frames
from services.training.loop import train
from services.training.objective import VALIDATION_METRICS
from services.training.progress import NullProgress
from services.training.synthetic import synthetic_frame, synthetic_spec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "finetune.json"
TARGET_RATIO = 0.30
FACTORY = "benchmarks.finetune_model:build"
TASKS: dict[str, tuple[Task, str | None]] = {
    "binary": (Task(), None),
    "multiclass": (Task(kind="multiclass", classes=(0, 1, 2, 3)), None),
    "regression": (Task(kind="regression"), FACTORY),
    "regression-mlp": (Task(kind="regression"), None),  # the built-in model, its defaults
}


class Timer(NullProgress):
    """Wall time between the first and the last optimizer step."""

    def __init__(self) -> None:
        self.first: tuple[int, float] | None = None
        self.last: tuple[int, float] | None = None

    def step(self, step: int, loss: float, lr: float) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = (step, now)
        self.last = (step, now)

    @property
    def steps_per_s(self) -> float:
        assert self.first and self.last
        return (self.last[0] - self.first[0]) / (self.last[1] - self.first[1])


def loss_by_rows(result: Any, val_df: Any, old: Any, task: Task) -> dict[str, Any]:
    """Mean validation loss of the best weights on rows with a category the old data
    never had vs the other rows (where the remaining error sits)."""
    losses = task.batch_loss(val_df["label"].to_numpy(),
                             predict(result.model, result.preprocessor, val_df, task))
    new = np.zeros(len(val_df), dtype=bool)
    for column in ("c0", "c1"):
        new |= ~val_df[column].isin(set(old[column])).to_numpy()
    return {
        "rows_new_category": int(new.sum()),
        "loss_rows_new_category": float(losses[new].mean()),
        "loss_other_rows": float(losses[~new].mean()),
    }


def finetune_vs_scratch(quick: bool, work: Path, task: Task, factory: str | None,
                        overrides: dict[str, Any] | None = None) -> dict:
    """Parent on old data; scratch vs fine-tuned on the shifted set; steps ratio.

    ``work`` is the case's own directory: runs resume from checkpoints found there."""
    spec = synthetic_spec(n_numeric=20, n_categorical=2)
    n_old, n_new = (6_000, 3_000) if quick else (40_000, 12_000)
    base = {
        "batch_size": 256,
        "max_steps": 1_500 if quick else 6_000,
        "epochs": None,
        "eval_every_steps": 25,
        "early_stopping": {"patience": 8, "min_delta": 1e-4},
        "checkpoint": {"every_steps": 100_000},
        # dropout: the task's default (0.1 classification, 0 regression), as a user gets it
        "architecture": {"hidden_sizes": [64, 64], "dropout": None},
    }
    config = load_config(overrides=base).with_overrides(overrides or {})
    kw: dict[str, Any] = {"task": task, "factory": factory, "progress": None}
    old = synthetic_frame(n_old, spec, seed=1, start="2026-01-01", task=task)
    p_train, p_val = build_training_frames(
        spec, old, None, replay_ratio=0.0, validation_share=0.2,
        time_column="event_timestamp", seed=0,
    )  # fmt: skip
    parent = train(work / "parent", spec, p_train, p_val, config, **kw)

    fresh = synthetic_frame(n_new, spec, seed=2, shift=1.5, start="2026-02-01", task=task)
    train_df, val_df = build_training_frames(
        spec, fresh, old, replay_ratio=config.data.replay_ratio, validation_share=0.2,
        time_column="event_timestamp", seed=0,
    )  # fmt: skip
    parent_on_new = train(
        work / "parent-eval", spec, train_df, val_df,
        config.with_overrides({"max_steps": 1, "optimizer": {"lr": 1e-12}}),
        init_from=parent, **kw,
    )  # fmt: skip
    scratch = train(work / "scratch", spec, train_df, val_df, config, **kw)
    tuned = train(work / "tuned", spec, train_df, val_df, config, init_from=parent, **kw)
    target = scratch.best_val_loss
    reached = next((h["step"] for h in tuned.history if h["val_loss"] <= target), None)
    ratio = None if reached is None else reached / scratch.step
    metrics = VALIDATION_METRICS[task.kind][1:]
    return {
        "task": task.to_dict(),
        "model": factory or "built-in tabular MLP",
        "rows": {"old": n_old, "fresh": n_new, "train": len(train_df), "val": len(val_df)},
        "parent": {"steps": parent.step, "val_loss_old": parent.best_val_loss},
        "parent_on_shifted_val_loss": parent_on_new.history[0]["val_loss"],
        "scratch": {
            "steps": scratch.step,
            "status": scratch.status,
            "best_val_loss": scratch.best_val_loss,
            **{m: scratch.metrics[m] for m in metrics},
            **loss_by_rows(scratch, val_df, old, task),
        },
        "finetune": {
            "steps": tuned.step,
            "status": tuned.status,
            "best_val_loss": tuned.best_val_loss,
            **{m: tuned.metrics[m] for m in metrics},
            **loss_by_rows(tuned, val_df, old, task),
            "steps_to_scratch_loss": reached,
            "curve": [(int(h["step"]), round(h["val_loss"], 5)) for h in tuned.history[:12]],
        },
        "ratio_steps": ratio,
        "target_ratio": TARGET_RATIO,
        "passed": ratio is not None and ratio <= TARGET_RATIO,
    }


def throughput(quick: bool, work: Path) -> dict:
    spec = synthetic_spec(n_numeric=20, n_categorical=0)
    frame = synthetic_frame(20_000, spec, seed=5)
    cut = 16_000
    steps = 300 if quick else 1_500
    out = {}
    for threads in (1, 2):
        config = load_config(
            overrides={
                "batch_size": 256,
                "max_steps": steps,
                "epochs": None,
                "eval_every_steps": 100_000,
                "num_threads": threads,
                "checkpoint": {"every_steps": 100_000},
                "architecture": {"hidden_sizes": [64, 64], "dropout": 0.0},
            }
        )
        rates = []
        for rep in range(3):
            timer = Timer()
            train(work / f"tp-{threads}-{rep}", spec, frame.iloc[:cut], frame.iloc[cut:], config,
                  progress=timer)  # fmt: skip
            rates.append(timer.steps_per_s)
        out[f"threads_{threads}"] = {"steps_per_s_best": max(rates), "runs": rates}
    out["speedup_1_over_2"] = (
        out["threads_1"]["steps_per_s_best"] / out["threads_2"]["steps_per_s_best"]
    )
    return out


def _write(result: dict, started: float) -> None:
    """Write what has been measured so far (a run cut short keeps its finished parts)."""
    result["duration_s"] = round(time.perf_counter() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    parser.add_argument("--no-throughput", action="store_true", help="skip part 2")
    args = parser.parse_args()
    if str(ROOT) not in sys.path:  # run as a script: the factory module must import
        sys.path.insert(0, str(ROOT))
    started = time.perf_counter()
    result: dict[str, Any] = {
        "quick": args.quick,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_threads_default": torch.get_num_threads(),
        },
        "finetune": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.tasks:
            result["finetune"][name] = finetune_vs_scratch(args.quick, work / name,
                                                           *TASKS[name])
            result["ratios"] = {k: r["ratio_steps"] for k, r in result["finetune"].items()}
            result["passed"] = all(r["passed"] for r in result["finetune"].values())
            _write(result, started)
        if not args.no_throughput:
            result["throughput"] = throughput(args.quick, work)
    _write(result, started)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
