"""Whether the rows after a change point have stopped moving: a step, or a ramp still going.

A gradual drift goes on moving after a detector fires. A candidate trained on the ramp
so far becomes a champion whose drift reference (its own fresh rows) the rest of the
ramp drifts from, and the loop asks again: two episodes for one change, the second
chasing a move that is already over. So before training, the trainer splits its fresh
rows at their median event time and checks the newer half against the older half with
the drift monitor's own statistics and policy (PSI and KS per feature, multiple
testing, the effect-size floor). Drifted means still moving: the attempt starts again
at the split (waiting for more rows only when too few lie after it) and checks again,
``retrain.settle_rounds`` times at most; so it trains on the newest part that no longer
moves, or, where the move goes on, on the newest part it has.

An abrupt change passes at once (both halves come from the new normal), and so does a
concept change (its features do not move). A change point estimated a window early
(pre-change rows in the older half) is moved past those rows the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from services.drift.check import check_frame
from services.drift.policy import DriftSettings
from services.drift.profile import build_reference_profile
from services.featurespec import ModelSpec

MIN_HALF_ROWS = 100
"""Fewer rows than this in either half: too few to tell a ramp from noise (settled)."""


@dataclass(frozen=True, slots=True)
class Settling:
    """The outcome of one check: still ``moving`` or not, and where the newer half starts."""

    moving: bool
    split: datetime | None
    older_rows: int
    newer_rows: int
    drifted: tuple[str, ...] = ()


def check_settled(frame: pd.DataFrame, spec: ModelSpec, drift: DriftSettings,
                  time_column: str) -> Settling:
    """Split ``frame`` at its median event time; is the newer half drifted from the older?

    ``drift`` is the model's drift section: the same thresholds the monitor applies to a
    live window against a champion's reference. A declared cycle is not applied (the
    halves are compared whole): the caller skips the check for a seasonal model.
    """
    n = len(frame)
    half = n // 2  # the smaller half
    if half < MIN_HALF_ROWS:
        return Settling(False, None, half, n - half)
    times = pd.to_datetime(frame[time_column], utc=True)
    order = np.argsort(times.to_numpy(), kind="stable")
    ordered, times = frame.iloc[order], times.iloc[order]
    split = times.iloc[half].to_pydatetime()
    older = ordered[times < split]  # rows at the split time go with the newer half
    newer = ordered[times >= split]
    if len(older) < MIN_HALF_ROWS or len(newer) < MIN_HALF_ROWS:
        return Settling(False, split, len(older), len(newer))
    profile = build_reference_profile(older, spec, "settle-older-half")
    policy = drift.model_copy(update={"seasonality": None})
    [check] = check_frame(newer, spec, profile, policy, time_column=time_column)
    verdict = check.verdict
    return Settling(verdict.drifted, split, len(older), len(newer), verdict.drifted_features)
