"""Drift check of a file: the monitor's core, policy and trigger, run over a data frame.

Used by ``driftloop drift check`` (notebooks, CI of users' own data): the frame is cut
into windows of ``window_size`` rows (or taken whole), each window gets the same
statistics, verdict and ``DriftReport`` as on the live stream, and goes through the
monitor's own decision path (:func:`services.drift.policy.decide_window`: windows under
``min_window_events`` never trigger; then consecutive windows, cooldown, one request in
flight), so the result also says whether the monitor would have asked for a retrain.
Under a declared cycle (``drift.seasonality``) each window is compared with the
reference rows of its phase, as the monitor does (:mod:`services.drift.comparison`;
the reference's rows and event times are then needed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from services.drift.comparison import WindowReference
from services.drift.policy import DriftSettings, WindowVerdict, decide_window, evaluate_window
from services.drift.profile import ReferenceProfile, build_reference_profile, infer_spec
from services.drift.report import build_drift_report, retrain_request_id, window_key
from services.drift.season import ReferenceRows
from services.drift.trigger import RetrainTrigger, TriggerDecision
from services.featurespec import ModelSpec
from streams.contracts import DriftReport, PartitionRange, WindowBounds

TIME_COLUMNS = ("event_timestamp", "event_time", "created", "label_time", "timestamp")
"""Column names recognised as times (besides any datetime-typed column)."""
LABEL_COLUMNS = ("label", "is_fraud", "target", "y")
"""Column names recognised as labels."""
_ID_NAME = re.compile(r"(^id$|_id$|^id_|_key$|^uuid$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """One window's report, verdict and what the retrain trigger made of it."""

    report: DriftReport
    verdict: WindowVerdict
    decision: TriggerDecision


def feature_columns(
    frame: pd.DataFrame,
    *,
    features: Iterable[str] = (),
    exclude: Iterable[str] = (),
    time_column: str | None = None,
) -> tuple[list[str], list[str]]:
    """(features compared, columns left out): ``features`` when given, else every column
    that is not an id, a time or a label (by name or, for times, by dtype)."""
    chosen = list(features)
    if chosen:
        absent = [c for c in chosen if c not in frame.columns]
        if absent:
            raise KeyError(f"--features names columns the reference lacks: {absent}")
        return chosen, [c for c in frame.columns if c not in chosen]
    skip = set(exclude) | set(TIME_COLUMNS) | set(LABEL_COLUMNS)
    if time_column:
        skip.add(time_column)
    kept, left = [], []
    for column in frame.columns:
        is_time = pd.api.types.is_datetime64_any_dtype(frame[column])
        if column in skip or is_time or _ID_NAME.search(str(column)):
            left.append(column)
        else:
            kept.append(column)
    if not kept:
        raise ValueError("no feature columns left after leaving out ids, times and labels; "
                         "name them with --features")
    return kept, left


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
    drift: DriftSettings | None = None,
    *,
    window_size: int = 0,
    time_column: str | None = "event_timestamp",
    source: str = "input",
    now: datetime | None = None,
    rows: ReferenceRows | None = None,
) -> list[WindowCheck]:
    """Windows of ``window_size`` rows (0: the whole frame) checked against ``profile``.

    ``drift`` holds every number the live monitor applies (policy, ``min_window_events``,
    ``ks_method``, trigger, ``seasonality``); rows are taken in time order when
    ``time_column`` exists. ``rows``: the reference's rows and event times, which a
    declared cycle needs (without them the whole reference is used, and that is logged);
    a declared cycle also needs the input's times (``time_column``).
    """
    drift = drift or DriftSettings()
    if len(frame) == 0:
        raise ValueError("the input has no rows")
    now = now or datetime.now(UTC)
    times = _times(frame, time_column)
    if drift.seasonality is not None and times is None:
        raise ValueError(f"seasonality declared but the input has no event-time column "
                         f"{time_column!r}: a window's phase comes from its event times")
    if times is not None:
        order = np.argsort(times.to_numpy(), kind="stable")
        frame, times = frame.iloc[order], times.iloc[order]
    compare = WindowReference(profile, spec, ks_method=drift.ks_method,
                              seasonality=drift.seasonality, rows=rows)
    trigger = RetrainTrigger(drift.trigger_config())
    numeric, categorical = frame_columns(frame, spec)
    size = window_size if window_size > 0 else len(frame)
    out = []
    for start in range(0, len(frame), size):
        stop = min(start + size, len(frame))
        cats = {k: v[start:stop] for k, v in categorical.items()}
        if times is not None:
            chunk = times.iloc[start:stop]
            t0, t1 = chunk.min().to_pydatetime(), chunk.max().to_pydatetime()
        else:
            t0 = t1 = now
        against = compare.for_window(t0, t1)
        stats = against.engine.compute(numeric[start:stop], cats)
        verdict = evaluate_window(stats, spec, drift)
        bounds = WindowBounds(
            start_time=t0,
            end_time=t1,
            n_events=stop - start,
            offsets=[
                PartitionRange(topic=source, partition=0, first_offset=start, last_offset=stop - 1)
            ],
        )
        report = build_drift_report(
            spec.model, bounds, verdict, profile.snapshot_id, created_at=now,
            reference_phase=against.phase,
        )
        key = window_key(bounds)
        decision = decide_window(
            trigger, drift, verdict, n_events=stop - start, window_end=t1, window_id=key,
            request_id=retrain_request_id(spec.model, profile.snapshot_id, key),
        )
        out.append(WindowCheck(report=report, verdict=verdict, decision=decision))
    return out


def reference_from_frame(
    reference: pd.DataFrame,
    snapshot_id: str,
    columns: list[str],
    *,
    model: str = "adhoc",
    n_bins: int = 10,
) -> tuple[ModelSpec, ReferenceProfile]:
    """Spec (kinds from dtypes) and profile of ``columns`` of a reference frame."""
    spec = infer_spec(reference[columns], model=model)
    return spec, build_reference_profile(reference, spec, snapshot_id, n_bins=n_bins)
