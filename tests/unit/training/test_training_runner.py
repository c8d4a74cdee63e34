from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from services.featurespec import ModelSpec
from services.registry.store import ModelRegistry
from services.training.config import TrainingConfig
from services.training.runner import TrainingJob, run_job
from services.training.synthetic import synthetic_frame

CHANGE = datetime(2026, 2, 1, tzinfo=UTC)


def test_first_version_then_fine_tune_with_lineage(
    tmp_path: Path, spec: ModelSpec, config: TrainingConfig
) -> None:
    registry = ModelRegistry(str(tmp_path / "registry"))
    runs = tmp_path / "runs"
    old = synthetic_frame(900, spec, seed=1)
    first = run_job(
        TrainingJob("synth", "initial:synth:snap-a", "manual", "snap-a", fresh=old),
        spec,
        registry,
        runs,
        config,
        progress=None,
    )
    assert first.status == "registered" and first.version is not None
    assert first.version.version == 1
    again = run_job(
        TrainingJob("synth", "initial:synth:snap-a", "manual", "snap-a", fresh=old),
        spec,
        registry,
        runs,
        config,
        progress=None,
    )
    assert again.status == "duplicate" and again.version.version == 1  # type: ignore[union-attr]

    parent = registry.load("synth", 1)
    fresh = synthetic_frame(600, spec, seed=2, shift=1.0, start="2026-02-01")
    child = run_job(
        TrainingJob(
            "synth",
            "req-7",
            "covariate",
            "snap-b",
            fresh=fresh,
            parent=parent,
            replay=old,
            window_start=fresh["event_timestamp"].min().to_pydatetime(warn=False),
            window_end=fresh["event_timestamp"].max().to_pydatetime(warn=False),
            episode_id="ep-1",
            attempt=2,
            change_point=CHANGE,
        ),
        spec,
        registry,
        runs,
        config,
        progress=None,
    )
    assert child.status == "registered" and child.version is not None
    lineage = child.version.manifest.lineage
    assert lineage.training_snapshot_id == "snap-b"
    assert lineage.parent_snapshot_id == "snap-a"
    assert lineage.parent_version == 1 and lineage.request_id == "req-7"
    assert child.version.manifest.metrics["replay_rows"] > 0
    # the episode and what the run trained on, as read back from the stored manifest
    stored = registry.manifest("synth", 2).lineage
    assert (stored.episode_id, stored.attempt, stored.change_point) == ("ep-1", 2, CHANGE)
    labelled = int(fresh[spec.label].notna().sum())
    wanted_replay = round(labelled * config.data.replay_ratio / (1 - config.data.replay_ratio))
    assert (stored.fresh_rows, stored.replay_rows) == (labelled, wanted_replay)
    assert stored.replay_share == wanted_replay / (labelled + wanted_replay)
    assert child.version.manifest.metrics["dropped_non_finite_rows"] == 0
    assert child.version.manifest.extra["fine_tuned"] is True
    assert registry.list_versions("synth") == [1, 2]


def test_interrupted_job_registers_nothing_and_resumes(
    tmp_path: Path, spec: ModelSpec, config: TrainingConfig
) -> None:
    registry = ModelRegistry(str(tmp_path / "registry"))
    stop = threading.Event()
    stop.set()
    frame: pd.DataFrame = synthetic_frame(600, spec, seed=1)
    job = TrainingJob("synth", "req-1", "manual", "snap-a", fresh=frame)
    out = run_job(job, spec, registry, tmp_path / "runs", config, stop_event=stop, progress=None)
    assert out.status == "interrupted" and registry.list_versions("synth") == []
    out = run_job(job, spec, registry, tmp_path / "runs", config, progress=None)
    assert out.status == "registered" and out.result is not None
    assert out.result.resumed_from_step == 0
