"""Assemble a run's training and validation frames from plain DataFrames.

Fetching (Feast historical features, saved-dataset snapshots) lives elsewhere; this
module only decides which rows train and which validate:

- only labelled rows are used;
- the fresh window is mixed with a replay sample of the parent's snapshot so that
  fine-tuning does not forget the old distribution: ``replay_ratio`` is the share of
  replay rows in the mixed set (capped by what the snapshot holds);
- each part is split by event time, its newest ``validation_share`` becoming
  validation. Splitting the parts separately keeps both in the validation set, so the
  validation loss (and early stopping) measure the new data *and* forgetting, and no
  row trains on the future of a row it is validated against within its own source.
  Rows sharing the cut timestamp all go to validation (no leakage at the boundary).
- rows with a non-finite numeric feature (inf; NaN is a missing value the
  preprocessing imputes) are dropped, and counted: the train frame's
  ``attrs[DROPPED_ATTR]`` holds how many, and the run's manifest reports it. A label
  is never dropped for its value: a label that does not fit the model's task (an
  infinite value, a class the model does not have) is an error of the run, raised by
  the training loop's label check, so bad labels are seen instead of trained around.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.featurespec import ModelSpec

SOURCE_COLUMN = "_source"
DROPPED_ATTR = "dropped_non_finite_rows"


def finite_rows(frame: pd.DataFrame, spec: ModelSpec) -> tuple[pd.DataFrame, int]:
    """``frame`` without rows whose numeric features are infinite; and how many."""
    columns = [f.name for f in spec.numeric if f.name in frame]
    if frame.empty or not columns:
        return frame, 0
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isinf(values).any(axis=1)
    dropped = int(bad.sum())
    return (frame[~bad] if dropped else frame), dropped


def labelled_only(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Rows whose label is present (the label column must exist)."""
    if spec.label not in frame:
        raise KeyError(f"frame has no label column {spec.label!r}")
    return frame[frame[spec.label].notna()]


def replay_sample(fresh_rows: int, replay: pd.DataFrame, ratio: float, seed: int) -> pd.DataFrame:
    """Rows of ``replay`` so that they make up ``ratio`` of fresh + replay."""
    if ratio <= 0.0 or replay.empty or fresh_rows == 0:
        return replay.iloc[0:0]
    wanted = round(fresh_rows * ratio / (1.0 - ratio))
    n = min(len(replay), max(wanted, 0))
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(replay), size=n, replace=False))
    return replay.iloc[picked]


def time_split(
    frame: pd.DataFrame, time_column: str, validation_share: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Oldest rows train, the newest ``validation_share`` validate (by ``time_column``)."""
    if frame.empty:
        return frame, frame
    ordered = frame.sort_values(time_column, kind="stable")
    cut = round(len(ordered) * (1.0 - validation_share))
    cut = min(max(cut, 1), len(ordered))
    if cut == len(ordered):
        return ordered, ordered.iloc[0:0]
    boundary = ordered[time_column].iloc[cut]
    is_val = ordered[time_column] >= boundary
    return ordered[~is_val], ordered[is_val]


def build_training_frames(
    spec: ModelSpec,
    fresh: pd.DataFrame,
    replay: pd.DataFrame | None,
    *,
    replay_ratio: float,
    validation_share: float,
    time_column: str,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and validation frames: labelled fresh rows + a replay sample, time-split.

    The result carries a ``_source`` column (``fresh``/``replay``) for reporting.
    """
    fresh, dropped = finite_rows(labelled_only(fresh, spec), spec)
    fresh = fresh.assign(**{SOURCE_COLUMN: "fresh"})
    parts = [fresh]
    if replay is not None and replay_ratio > 0:
        replay, dropped_replay = finite_rows(labelled_only(replay, spec), spec)
        dropped += dropped_replay
        parts.append(
            replay_sample(len(fresh), replay, replay_ratio, seed).assign(
                **{SOURCE_COLUMN: "replay"}
            )
        )
    trains, vals = [], []
    for part in parts:
        train, val = time_split(part, time_column, validation_share)
        trains.append(train)
        vals.append(val)
    train = pd.concat(trains, ignore_index=True)
    val = pd.concat(vals, ignore_index=True)
    if train.empty or val.empty:
        raise ValueError(
            f"not enough labelled rows to train ({len(train)}) and validate ({len(val)})"
        )
    train.attrs[DROPPED_ATTR] = dropped
    return train, val
