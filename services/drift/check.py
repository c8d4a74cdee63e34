"""Drift check of a file: the monitor's core and policy, run over a data frame.

Used by ``driftloop drift check`` (notebooks, CI of users' own data): the frame is cut
into windows of ``window_size`` rows (or taken whole), each window gets the same
statistics, verdict and ``DriftReport`` as on the live stream, and the windows go
through the same :class:`RetrainTrigger` so the result also says whether the monitor
would have asked for a retrain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from services.drift.policy import DriftPolicy, WindowVerdict, evaluate_window
from services.drift.profile import ReferenceProfile, build_reference_profile, infer_spec
from services.drift.report import build_drift_report, retrain_request_id, window_key
from services.drift.stats import WindowStatsEngine
from services.drift.trigger import RetrainTrigger, TriggerConfig, TriggerDecision
from services.featurespec import ModelSpec
from streams.contracts import DriftReport, PartitionRange, WindowBounds


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """One window's report, verdict and what the retrain trigger made of it."""

    report: DriftReport
    verdict: WindowVerdict
    decision: TriggerDecision


def trigger_config(policy: DriftPolicy) -> TriggerConfig:
    """The trigger numbers of a drift policy."""
    return TriggerConfig(
        consecutive=policy.consecutive_windows,
        cooldown=policy.cooldown,
        in_flight_timeout=policy.in_flight_timeout,
    )


def frame_columns(
    frame: pd.DataFrame, spec: ModelSpec
) -> tuple[np.ndarray, dict[str, list[object]]]:
    """A frame's features as the window matrix (NaN missing) and categorical lists."""
    absent = [n for n in spec.names if n not in frame.columns]
    if absent:
        raise KeyError(f"input lacks features {absent}")
    numeric = np.empty((len(frame), len(spec.numeric)), dtype=np.float64)
    for j, f in enumerate(spec.numeric):
        numeric[:, j] = pd.to_numeric(frame[f.name], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    categorical = {
        f.name: [None if pd.isna(v) else v for v in frame[f.name].tolist()]
        for f in spec.categorical
    }
    return numeric, categorical


def _times(frame: pd.DataFrame, time_column: str | None) -> pd.Series | None:
    if time_column and time_column in frame.columns:
        return pd.to_datetime(frame[time_column], utc=True)
    return None


def check_frame(
    frame: pd.DataFrame,
    spec: ModelSpec,
    profile: ReferenceProfile,
    policy: DriftPolicy | None = None,
    *,
    window_size: int = 0,
    time_column: str | None = "event_time",
    source: str = "input",
    now: datetime | None = None,
) -> list[WindowCheck]:
    """Windows of ``window_size`` rows (0: the whole frame) checked against ``profile``."""
    policy = policy or DriftPolicy()
    if len(frame) == 0:
        raise ValueError("the input has no rows")
    now = now or datetime.now(UTC)
    engine = WindowStatsEngine(profile, spec)
    trigger = RetrainTrigger(trigger_config(policy))
    numeric, categorical = frame_columns(frame, spec)
    times = _times(frame, time_column)
    size = window_size if window_size > 0 else len(frame)
    out = []
    for start in range(0, len(frame), size):
        stop = min(start + size, len(frame))
        cats = {k: v[start:stop] for k, v in categorical.items()}
        stats = engine.compute(numeric[start:stop], cats)
        verdict = evaluate_window(stats, spec, policy)
        if times is not None:
            chunk = times.iloc[start:stop]
            t0, t1 = chunk.min().to_pydatetime(), chunk.max().to_pydatetime()
        else:
            t0 = t1 = now
        bounds = WindowBounds(
            start_time=t0,
            end_time=t1,
            n_events=stop - start,
            offsets=[
                PartitionRange(topic=source, partition=0, first_offset=start, last_offset=stop - 1)
            ],
        )
        report = build_drift_report(
            spec.model, bounds, verdict, profile.snapshot_id, created_at=now
        )
        key = window_key(bounds)
        decision = trigger.observe(
            verdict.drifted,
            t1,
            key,
            request_id=retrain_request_id(spec.model, profile.snapshot_id, key),
        )
        out.append(WindowCheck(report=report, verdict=verdict, decision=decision))
    return out


def reference_from_frame(
    reference: pd.DataFrame,
    snapshot_id: str,
    *,
    model: str = "adhoc",
    exclude: tuple[str, ...] = (),
    n_bins: int = 10,
) -> tuple[ModelSpec, ReferenceProfile]:
    """Spec (inferred from dtypes) and profile of a reference frame, for model-less checks."""
    columns = [c for c in reference.columns if c not in exclude]
    spec = infer_spec(reference[columns], model=model)
    return spec, build_reference_profile(reference, spec, snapshot_id, n_bins=n_bins)


def load_model_reference(model: str) -> tuple[ModelSpec, ReferenceProfile]:
    """Spec from the model's Feast FeatureService and profile of its champion's snapshot.

    Imported lazily: Feast is slow to import and the loaders live with the features code.
    """
    from services.features.feast_repo import load_model_spec, open_store

    try:
        from services.features.snapshot import (  # type: ignore[attr-defined]
            load_champion_profile,
        )
    except ImportError as exc:
        raise RuntimeError(
            "the champion's reference profile cannot be loaded yet "
            "(services.features.snapshot.load_champion_profile is missing); "
            "compare two files with --reference instead"
        ) from exc
    store = open_store()
    spec = load_model_spec(store, model)
    return spec, load_champion_profile(store, spec)
