"""One retrain job end to end, without Kafka: frames -> train (resumable) -> register.

The training worker's Kafka loop and ``driftloop train`` both call ``run_job``:

- a request id already registered returns that version (``duplicate``): redelivery is
  harmless;
- the run directory is keyed by the request id, so a redelivered request whose run was
  killed resumes from its last checkpoint;
- an interrupted run (``stop_event`` set) registers nothing and reports
  ``interrupted``: the caller must not commit the request's offset;
- the model's task and factory (``settings.model(m).task`` / ``.factory``) go to the
  loop and into the version: the manifest's ``task``, and the factory's path and source
  hash in its ``architecture``. A label that does not fit the task raises
  ``LabelError`` (a ``ValueError``) before anything is trained or registered;
- the lineage records the job's episode, attempt and change point, and the fresh and
  replay rows the run used with the replay's share of them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import pandas as pd

from services.featurespec import ModelSpec
from services.model.task import Task
from services.registry.manifest import Lineage
from services.registry.store import LoadedModel, ModelRegistry, RegisteredVersion
from services.training.checkpoint import run_dir_for
from services.training.config import TrainingConfig
from services.training.data import DROPPED_ATTR, SOURCE_COLUMN, build_training_frames
from services.training.loop import TrainResult, train
from services.training.progress import ProgressReporter


@dataclass(frozen=True)
class TrainingJob:
    """What to train: the fresh window, the parent to start from, and the lineage ids."""

    model: str
    request_id: str
    reason: str
    training_snapshot_id: str
    fresh: pd.DataFrame
    parent: LoadedModel | None = None
    replay: pd.DataFrame | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    episode_id: str | None = None
    attempt: int | None = None
    change_point: datetime | None = None


@dataclass(frozen=True)
class JobOutcome:
    """``registered`` (new version), ``duplicate`` (earlier version) or ``interrupted``."""

    status: Literal["registered", "duplicate", "interrupted"]
    version: RegisteredVersion | None
    result: TrainResult | None


def source_rows(train_df: pd.DataFrame, val_df: pd.DataFrame) -> tuple[int, int]:
    """Fresh and replay rows a run used (training and validation together)."""
    sources = pd.concat([train_df[SOURCE_COLUMN], val_df[SOURCE_COLUMN]], ignore_index=True)
    replay = int((sources == "replay").sum())
    return len(sources) - replay, replay


def replay_share(fresh_rows: int, replay_rows: int) -> float:
    """Replay rows' share of all rows a run used (0 without any)."""
    total = fresh_rows + replay_rows
    return replay_rows / total if total else 0.0


def run_job(
    job: TrainingJob,
    spec: ModelSpec,
    registry: ModelRegistry,
    runs_root: str | Path,
    config: TrainingConfig,
    *,
    stop_event: threading.Event | None = None,
    progress: ProgressReporter | Literal["auto"] | None = "auto",
    task: Task | None = None,
    factory: str | None = None,
) -> JobOutcome:
    """Train (or resume, or skip) the job for ``task`` (default binary) with the built-in
    model or ``factory``, and register its version."""
    task = task if task is not None else Task()
    existing = registry.find_by_request_id(job.model, job.request_id)
    if existing is not None:
        return JobOutcome("duplicate", registry.get(job.model, existing), None)
    train_df, val_df = build_training_frames(
        spec,
        job.fresh,
        job.replay if job.parent is not None else None,
        replay_ratio=config.data.replay_ratio,
        validation_share=config.data.validation_share,
        time_column=config.data.time_column,
        seed=config.seed,
    )
    result = train(
        run_dir_for(runs_root, job.request_id),
        spec,
        train_df,
        val_df,
        config,
        init_from=job.parent,
        stop_event=stop_event,
        progress=progress,
        run_id=job.request_id,
        task=task,
        factory=factory,
    )
    if result.status == "interrupted":
        return JobOutcome("interrupted", None, result)
    parent = job.parent
    fresh_rows, replay_rows = source_rows(train_df, val_df)
    lineage = Lineage(
        training_snapshot_id=job.training_snapshot_id,
        parent_version=parent.version if parent else None,
        parent_snapshot_id=parent.training_snapshot_id if parent else None,
        request_id=job.request_id,
        reason=job.reason,
        window_start=job.window_start,
        window_end=job.window_end,
        run_id=result.run_id,
        episode_id=job.episode_id,
        attempt=job.attempt,
        change_point=job.change_point,
        fresh_rows=fresh_rows,
        replay_rows=replay_rows,
        replay_share=replay_share(fresh_rows, replay_rows),
    )
    metrics = {
        **result.metrics,
        "best_val_loss": result.best_val_loss,
        "replay_rows": float((train_df.get("_source") == "replay").sum()),
        DROPPED_ATTR: float(train_df.attrs.get(DROPPED_ATTR, 0)),
    }
    registered = registry.register(
        job.model,
        state_dict=result.state_dict,
        preprocessing=result.preprocessing,
        model_meta=result.model_meta,
        lineage=lineage,
        hyperparameters=result.config.model_dump(mode="json"),
        metrics=metrics,
        seeds={"seed": result.config.seed},
        extra={"status": result.status, "fine_tuned": result.fine_tuned, "steps": result.step},
        task=result.task.to_dict(),
    )
    status = "registered" if registered.created else "duplicate"
    return JobOutcome(status, registered, result)
