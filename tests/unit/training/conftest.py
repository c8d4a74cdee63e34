"""Small synthetic data and a fast config for the training tests."""

from __future__ import annotations

import pandas as pd
import pytest

from services.featurespec import ModelSpec
from services.training.config import TrainingConfig, load_config
from services.training.data import build_training_frames
from services.training.synthetic import synthetic_frame, synthetic_spec


@pytest.fixture(scope="session")
def spec() -> ModelSpec:
    return synthetic_spec(n_numeric=4, n_categorical=2)


@pytest.fixture(scope="session")
def frames(spec: ModelSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    fresh = synthetic_frame(1200, spec, seed=3, missing_share=0.05)
    return build_training_frames(
        spec,
        fresh,
        None,
        replay_ratio=0.0,
        validation_share=0.25,
        time_column="event_timestamp",
        seed=0,
    )


@pytest.fixture
def config() -> TrainingConfig:
    return load_config(
        overrides={
            "batch_size": 64,
            "optimizer": {"lr": 0.005},
            "max_steps": 60,
            "eval_every_steps": 10,
            "architecture": {"hidden_sizes": [16, 16], "dropout": 0.1},
            "checkpoint": {"every_steps": 20, "keep": 3},
            "early_stopping": {"patience": 50},
        }
    )
