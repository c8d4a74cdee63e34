"""Typed training configuration: defaults from ``defaults.yaml``, overrides by dict.

Every section is a frozen pydantic model, so a run's configuration cannot change
under it and can be stored verbatim (``model_dump(mode="json")``) in checkpoints
and registry manifests.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULTS_PATH = Path(__file__).with_name("defaults.yaml")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArchitectureConfig(_Frozen):
    """MLP over standardised numerics and per-categorical embeddings."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    dropout: float | None = Field(
        None, ge=0.0, lt=1.0,
        description="None: the task's default (0.1 for classification, 0 for regression: "
                    "dropout before a regression output makes its fit imprecise)")
    embedding_dim_max: int = Field(16, ge=1)
    embedding_dim_min: int = Field(2, ge=1)

    def embedding_dim(self, cardinality: int) -> int:
        """Embedding width for a vocabulary of ``cardinality`` rows (unknown bucket included).

        The common rule ``1.6 * n ** 0.56``, clamped to ``[min, max]``.
        """
        dim = round(1.6 * max(cardinality, 1) ** 0.56)
        return int(min(self.embedding_dim_max, max(self.embedding_dim_min, dim)))


class OptimizerConfig(_Frozen):
    """AdamW hyperparameters (peak learning rate)."""

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleConfig(_Frozen):
    """Linear warm-up over ``warmup_share`` of the steps, then cosine decay."""

    warmup_share: float = Field(0.1, ge=0.0, lt=1.0)
    min_lr_share: float = Field(0.05, ge=0.0, le=1.0)


class EarlyStoppingConfig(_Frozen):
    """Stop after ``patience`` evaluations without a val-loss gain of ``min_delta``."""

    patience: int = Field(5, ge=1)
    min_delta: float = Field(1e-4, ge=0.0)


class DataConfig(_Frozen):
    """How the training frame is assembled and split."""

    replay_ratio: float = Field(0.3, ge=0.0, lt=1.0)
    validation_share: float = Field(0.2, gt=0.0, lt=1.0)
    time_column: str = "event_timestamp"


class CheckpointConfig(_Frozen):
    """Periodic checkpoints (plus one at the end and one on interruption)."""

    every_steps: int = Field(200, ge=1)
    keep: int = Field(3, ge=1)


class FinetuneConfig(_Frozen):
    """Adjustments applied when training starts from a parent's weights.

    The parent's weights are already near a good optimum: a long warm-up (10% of a
    step budget that early stopping rarely uses up) only delays adaptation, so
    fine-tuning warms up over ``warmup_share`` of the steps instead (see
    benchmarks/training.md for the measurement behind the defaults).
    """

    lr_scale: float = Field(1.0, gt=0.0, le=10.0)
    warmup_share: float = Field(0.01, ge=0.0, lt=1.0)


class TrainingConfig(_Frozen):
    """Everything a training run needs besides data."""

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | Literal["auto"] = "auto"
    batch_size: int = Field(256, ge=1)
    max_steps: int | None = Field(2000, ge=1)
    epochs: int | None = Field(20, ge=1)
    grad_clip: float = Field(1.0, gt=0)
    eval_every_steps: int = Field(50, ge=1)
    architecture: ArchitectureConfig = ArchitectureConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    data: DataConfig = DataConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    finetune: FinetuneConfig = FinetuneConfig()

    @model_validator(mode="after")
    def _bounded(self) -> TrainingConfig:
        if self.max_steps is None and self.epochs is None:
            raise ValueError("set max_steps or epochs (or both)")
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> TrainingConfig:
        """A new config with ``overrides`` deep-merged into this one."""
        merged = _deep_merge(self.model_dump(mode="python"), overrides)
        return TrainingConfig.model_validate(merged)


class RetrainSettings(_Frozen):
    """A model's ``retrain`` section: when a retrain request may start, and retries.

    An attempt needs ``min_fresh_rows`` labelled events after the request's change point;
    it waits up to ``label_wait_s`` for them, else it is answered ``insufficient_data``.
    A data-starved or rejected attempt of a detector's episode is retried (a new request,
    not started before ``retry_after_s`` from then) until the episode has had
    ``episode_attempts`` attempts; then the episode is reported failed. ``attempts``
    is about something else: tries of one attempt against transient errors. A
    ``concept`` episode (the labels' relation changed) replays
    ``concept_replay_ratio`` of the parent's rows (default none: their labels follow the
    old relation), a covariate one ``training.data.replay_ratio``; a promoted concept
    candidate trained on fewer than ``concept_refine_rows`` post-change rows is refined
    once, ``refine_after_s`` later. Before a detector's covariate attempt trains, the
    newer half of its fresh rows is checked against the older half
    (:mod:`services.training.settle`): while they drift (a ramp still going) the attempt
    starts again at the split (waiting up to ``label_wait_s`` only when fewer than
    ``min_fresh_rows`` lie after it), at most ``settle_rounds`` times (0: never).
    """

    min_fresh_rows: int = Field(500, ge=0)  # labelled events after the change point ...
    label_wait_s: float = Field(300.0, ge=0)  # ... or how long to wait for them
    attempts: int = Field(3, ge=1)  # tries for transient failures
    retry_after_s: float = Field(300.0, ge=0)  # an episode's next attempt starts after this
    episode_attempts: int = Field(3, ge=1)  # trained or data-starved attempts per episode
    # A concept change makes the parent's labels wrong for today: a concept episode's
    # fine-tune replays this share of them instead of ``training.data.replay_ratio``.
    concept_replay_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    # ... so its first candidate learns from the post-change rows alone, which may be
    # few: when the promoted one had fewer than ``concept_refine_rows`` of them, one
    # refinement attempt (on everything after the change point by then, from the
    # promoted champion) is requested to start ``refine_after_s`` later. 0: never.
    concept_refine_rows: int = Field(5000, ge=0)
    refine_after_s: float = Field(3600.0, ge=0)
    # A gradual drift is still moving when its detector fires: the fresh rows' newer half
    # is checked against their older half and, while drifted, the attempt moves to the
    # split and checks again; at most this many times. 0: train at once.
    settle_rounds: int = Field(4, ge=0)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainingConfig:
    """Read the defaults (or ``path``) and deep-merge ``overrides`` into them."""
    raw = yaml.safe_load(Path(path or DEFAULTS_PATH).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"training config {path or DEFAULTS_PATH} is not a mapping")
    if overrides:
        raw = _deep_merge(raw, overrides)
    return TrainingConfig.model_validate(raw)
