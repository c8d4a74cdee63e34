from __future__ import annotations

import pydantic
import pytest

from services.training.config import ArchitectureConfig, TrainingConfig, load_config


def test_defaults_come_from_yaml() -> None:
    config = load_config()
    assert config.grad_clip == 1.0
    assert config.schedule.warmup_share == pytest.approx(0.1)
    assert config.checkpoint.keep == 3
    assert config.optimizer.lr == pytest.approx(1e-3)


def test_overrides_deep_merge_and_keep_siblings() -> None:
    config = load_config(overrides={"optimizer": {"lr": 0.01}, "batch_size": 32})
    assert config.optimizer.lr == pytest.approx(0.01)
    assert config.optimizer.weight_decay == pytest.approx(1e-4)  # sibling kept
    assert config.batch_size == 32
    again = config.with_overrides({"early_stopping": {"patience": 2}})
    assert again.early_stopping.patience == 2 and again.optimizer.lr == pytest.approx(0.01)


def test_frozen_and_strict() -> None:
    config = load_config()
    with pytest.raises(pydantic.ValidationError):
        config.batch_size = 3  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        load_config(overrides={"optimiser": {"lr": 1}})  # typo: unknown key
    with pytest.raises(pydantic.ValidationError):
        TrainingConfig(max_steps=None, epochs=None)


def test_embedding_dim_rule() -> None:
    arch = ArchitectureConfig(embedding_dim_max=16, embedding_dim_min=2)
    assert arch.embedding_dim(1) == 2
    assert arch.embedding_dim(10) == round(1.6 * 10**0.56)
    assert arch.embedding_dim(100_000) == 16
