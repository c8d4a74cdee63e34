"""Where the inputs moved: the evidence of a covariate shift, and where its new normal starts.

An episode's detectors estimate where its change began, each in its own way: the drift
monitor at the start of its first alarming window, the online learner from its error
stream. A shift in the inputs shows in the error as well, so the online learner may ask
first, with a change point that can lie hundreds of events early (measured on the demo's
fraud model: 487 events before a 1.5 sd shift; the candidate's snapshot, and so its drift
reference once promoted, then held 13% and 27% pre-change rows in two runs, and the
monitor kept alarming against it). The features themselves say better where they moved:

* :func:`inputs_moved`: do the fresh rows drift from the parent's reference, by the drift
  monitor's own statistics and policy? If so the episode is a covariate one, whichever
  detector spoke first (an error detector cannot tell a shift of the inputs from a change
  of the relation).
* :func:`locate_shift`: where, in the rows from the episode's earliest estimate to the
  newest, the new normal starts. The rows before the change follow the parent's reference
  (known: its bin shares per moved feature, missing values and categories included); the
  rows after it follow the newest rows' shares over the same bins. Each row's log
  likelihood ratio of "after" against "before" is summed over the moved features, and
  the change is where the sum from there to the newest row is largest (the CUSUM
  estimate with both distributions known; the "after" shares are estimated twice, the
  second time from the rows past the first estimate). The fresh data starts a margin
  after it: a pre-change row is left in only when the walk of ratios turns the wrong way
  for ``k`` rows, which grows unlikely as ``exp(-k J / 8)`` with ``J`` the Jeffreys
  divergence of the two distributions per row; ``MARGIN_NATS / J`` rows keep it below
  about 1e-4. A ramp has no single change point: the estimate falls where its rows
  become likelier "after" than "before", halfway up, and the rest of the ramp would be
  in the reference. So the ratios after the start are tested once more: when the newer
  half's run higher than the older half's (one-sided Welch test), the data is still
  moving and the start moves on to the newer half, up to ``MAX_RAMP_ROUNDS`` times.
  The ratio pools every moved feature into one number per row, so this sees a ramp's
  remainder that the per-feature settle check (:mod:`services.training.settle`) misses
  once the start is halfway up (measured: a 1.5 sd ramp on 7 of 17 inputs over 600 of
  1,500 events, the start located at event 300, the settle check's halves not drifted).

Both detectors' episodes therefore train on the same rows: from the located start to the
newest labelled row. A change that is still going (a ramp) is then left to the settle
check (:mod:`services.training.settle`).

Measured (``tests/unit/training/test_shift.py`` checks a few of these): 3 of 6 standard
normal features moved 1.5 sd, 300 seeds each, with 500, 20 and 5 pre-change rows before
3,000 post-change ones (and 487 before 3,000 with 4 moved, 0 before 2,000, 1,500 before
1,500): the estimate was exact in 74-87% of seeds and at most 5 rows off; with the margin
(13 rows here) no pre-change row was kept in any of the 2,100 runs. A 0.5 sd move: at
most 51 rows off, a margin of 105, none kept. About 10 ms for 3,500 rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from scipy.stats import ttest_ind

from services.drift.check import check_frame
from services.drift.policy import DriftSettings
from services.drift.profile import ReferenceProfile, category_key
from services.featurespec import ModelSpec

EPSILON = 1e-4
"""Shares of empty bins are smoothed as in PSI (``services.drift.stats``)."""
MARGIN_NATS = 74.0
"""The margin after the change, in rows times ``J`` (``exp(-74/8)`` is about 1e-4)."""
ROUNDS = 2
"""Estimates of the "after" shares: from the newest half, then from past the first split."""
SIGNIFICANCE = 0.01
"""Level of the one-sided test that the rows after the start are still moving."""
MIN_RAMP_ROWS = 50
"""Rows in each half at least for that test (fewer: taken as settled)."""
MAX_RAMP_ROUNDS = 4
"""Times the start moves on to the newer half of a ramp at most."""
ONE_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Whether the fresh rows drift from the parent's reference, and which features."""

    moved: bool
    features: tuple[str, ...]
    rows: int


@dataclass(frozen=True, slots=True)
class Located:
    """Where the new normal starts in the searched rows (``start`` None: no moved feature
    to locate it by)."""

    start: datetime | None
    split_row: int  # rows before the estimated change (its pre-change rows)
    margin_rows: int  # rows skipped after it
    rows: int  # rows searched
    divergence: float  # Jeffreys divergence per row, before against after
    features: tuple[str, ...]
    ramp_rounds: int = 0  # times the start moved on to the newer half of a ramp


def inputs_moved(frame: pd.DataFrame, spec: ModelSpec, reference: ReferenceProfile,
                 drift: DriftSettings, time_column: str) -> Evidence:
    """Do ``frame``'s rows drift from ``reference`` by the model's drift policy (the
    monitor's verdict on one window of all of them)? A declared cycle is not applied:
    the caller leaves seasonal models out."""
    if len(frame) == 0:
        return Evidence(False, (), 0)
    policy = drift.model_copy(update={"seasonality": None})
    [check] = check_frame(frame, spec, reference, policy, time_column=time_column)
    return Evidence(check.verdict.drifted, check.verdict.drifted_features, len(frame))


def bin_codes(frame: pd.DataFrame, reference: ReferenceProfile,
              features: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per feature of ``features`` the reference knows: each row's bin in the reference's
    binning (numeric bins, then missing; categories, then other, then missing) and the
    reference's share of each bin."""
    numeric, categorical = reference.numeric_by_name(), reference.categorical_by_name()
    out = []
    for name in features:
        if name in numeric:
            p = numeric[name]
            x = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
            codes = np.searchsorted(p.edges, x, side="right")
            codes[np.isnan(x)] = len(p.edges) + 1
            shares = np.append(p.shares, p.missing_share)
        elif name in categorical:
            c = categorical[name]
            index = {k: i for i, k in enumerate(c.categories)}
            other = len(c.categories)
            codes = np.array([other + 1 if k is None else index.get(k, other)
                              for k in map(category_key, frame[name].tolist())], dtype=np.int64)
            shares = np.append(np.asarray(c.shares, dtype=np.float64), c.missing_share)
        else:
            continue
        out.append((codes, shares))
    return out


def _ratios(binned: list[tuple[np.ndarray, np.ndarray]], after_rows: slice,
            n: int) -> tuple[np.ndarray, float]:
    """Each row's log likelihood ratio of "after" (the shares of ``after_rows``) against
    "before" (the reference's), and the Jeffreys divergence per row of the two."""
    ratio = np.zeros(n)
    divergence = 0.0
    for codes, before in binned:
        counts = np.bincount(codes[after_rows], minlength=len(before)).astype(np.float64)
        after = counts / max(counts.sum(), 1.0)
        p, q = np.maximum(after, EPSILON), np.maximum(before, EPSILON)
        log_ratio = np.log(p / q)
        ratio += log_ratio[codes]
        divergence += float(((p - q) * log_ratio).sum())
    return ratio, divergence


def _split(ratio: np.ndarray) -> int:
    """Rows before the change: the sum of ratios from there to the newest row is largest
    where the prefix sum is smallest."""
    return int(np.argmin(np.concatenate([[0.0], np.cumsum(ratio)])))


def _still_moving(ratio: np.ndarray) -> bool:
    """Do the newer half's ratios run higher than the older half's (one-sided Welch test
    at ``SIGNIFICANCE``)? After a step they are alike; on a ramp the older rows sit
    between the two distributions."""
    half = len(ratio) // 2
    older, newer = ratio[:half], ratio[half:]
    if min(len(older), len(newer)) < MIN_RAMP_ROWS:
        return False
    result = ttest_ind(newer, older, equal_var=False, alternative="greater")
    return bool(result.pvalue < SIGNIFICANCE)


def locate_shift(frame: pd.DataFrame, reference: ReferenceProfile, features: tuple[str, ...],
                 time_column: str) -> Located:
    """The start of the new normal in ``frame`` (the rows from the episode's earliest
    change estimate to the newest), located by ``features`` (those that moved against
    ``reference``, the parent's); ``start=None`` without any such feature."""
    n = len(frame)
    times = pd.to_datetime(frame[time_column], utc=True)
    order = np.argsort(times.to_numpy(), kind="stable")
    binned = bin_codes(frame.iloc[order], reference, features)
    if n == 0 or not binned:
        return Located(None, 0, 0, n, 0.0, ())
    times = times.iloc[order]
    ratio, divergence = _ratios(binned, slice(n // 2, n), n)
    split = _split(ratio)
    for _ in range(ROUNDS - 1):
        if split < n:
            ratio, divergence = _ratios(binned, slice(split, n), n)
            split = _split(ratio)
    margin = math.ceil(MARGIN_NATS / divergence) if divergence > 0 else n
    first = split + margin
    ramp_rounds = 0
    while ramp_rounds < MAX_RAMP_ROUNDS and first < n and _still_moving(ratio[first:]):
        first += (n - first) // 2  # a ramp still going: its newer half
        ramp_rounds += 1
    start = (times.iloc[first].to_pydatetime() if first < n
             else times.iloc[-1].to_pydatetime() + ONE_TICK)  # none surely past it yet
    return Located(start, split, margin, n, divergence, tuple(features), ramp_rounds)
