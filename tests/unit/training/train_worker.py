"""Subprocess used by the kill test: trains slowly so it can be SIGKILLed mid-run."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from services.featurespec import FeatureSpec, ModelSpec
from services.training.config import TrainingConfig
from services.training.loop import train
from services.training.progress import NullProgress


class Slow(NullProgress):
    def step(self, step: int, loss: float, lr: float) -> None:
        time.sleep(0.02)


if __name__ == "__main__":
    run_dir, data_dir = sys.argv[1], sys.argv[2]
    meta = json.loads(Path(data_dir, "job.json").read_text())
    spec = ModelSpec(
        model=meta["spec"]["model"],
        entity=meta["spec"]["entity"],
        features=tuple(FeatureSpec(**f) for f in meta["spec"]["features"]),
    )
    train(
        run_dir,
        spec,
        pd.read_parquet(f"{data_dir}/train.parquet"),
        pd.read_parquet(f"{data_dir}/val.parquet"),
        TrainingConfig.model_validate(meta["config"]),
        progress=Slow(),
    )
