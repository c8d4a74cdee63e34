"""Like with like under a declared cycle: the reference rows of a window's phase.

A recurring pattern that the reference already contains is not drift. When a model
declares its cycle (``drift.seasonality``: a period and a number of phase buckets), a
window is compared with the reference rows whose event time falls in the same phase of
the cycle, not with all of them: a two-hour window holds one phase of a daily cycle
while the whole reference holds every phase, so per-window tests would flag the cycle
itself.

Phase: an event time's epoch seconds (UTC) modulo the period, in ``buckets`` equal
parts. A window's phase range runs from the bucket of its first event time to the
bucket of its last one, wrapping around the period (``23:10``..``00:50`` of a daily
cycle is buckets 23 and 0); a window spanning a whole period or more takes the whole
reference. While the range holds fewer than ``min_reference_rows`` reference rows it
widens by one bucket on each side (symmetrically), up to the whole cycle; the choice
says so (:attr:`PhaseChoice.widened`) and the report's ``reference_phase`` names it.

The profile of a phase range is built from those rows exactly as the whole snapshot's
is (same quantile binning, KS sample, category rule; the snapshot's ``n_bins``), and
kept in memory per range (:class:`SeasonalProfiles` belongs to one snapshot, so the key
is the snapshot's content-hash id plus the range): after the first cycle a window costs
what it costs without a declared cycle. The whole range is the snapshot's own profile.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from services.drift.policy import Seasonality
from services.drift.profile import ReferenceProfile, build_reference_profile
from services.featurespec import ModelSpec

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_seconds(t: datetime) -> float:
    """Epoch seconds of ``t`` (naive means UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) / timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class PhaseRange:
    """``count`` consecutive phase buckets from ``first``, wrapping around the period."""

    first: int
    count: int
    buckets: int
    period_s: float

    @property
    def whole(self) -> bool:
        """Whether the range is the whole cycle."""
        return self.count >= self.buckets

    @property
    def width_s(self) -> float:
        """Seconds of one bucket."""
        return self.period_s / self.buckets

    @property
    def start_s(self) -> float:
        """Phase (seconds into the period) where the range begins."""
        return 0.0 if self.whole else self.first * self.width_s

    @property
    def end_s(self) -> float:
        """Phase where the range ends (below :attr:`start_s` when it wraps)."""
        return self.period_s if self.whole else (
            (self.first + self.count) % self.buckets) * self.width_s

    def indexes(self) -> np.ndarray:
        """The bucket indexes of the range."""
        return (self.first + np.arange(min(self.count, self.buckets))) % self.buckets

    def widened(self) -> PhaseRange:
        """One more bucket on each side (the whole cycle at most)."""
        if self.whole:
            return self
        count = self.count + 2
        if count >= self.buckets:
            return PhaseRange(0, self.buckets, self.buckets, self.period_s)
        return PhaseRange((self.first - 1) % self.buckets, count, self.buckets, self.period_s)

    def label(self) -> str:
        """``02:00:00-04:00:00 of 1d`` (phases as offsets into the period)."""
        period = _span(self.period_s)
        if self.whole:
            return f"whole cycle of {period}"
        return f"{_offset(self.start_s, self.period_s)}-{_offset(self.end_s, self.period_s)} " \
               f"of {period}"


def window_range(start: datetime, end: datetime, season: Seasonality) -> PhaseRange:
    """The phase buckets a window with first/last event times ``start``/``end`` covers."""
    period = season.period_s
    width = period / season.buckets
    lo = math.floor(epoch_seconds(start) / width)
    hi = math.floor(epoch_seconds(end) / width)
    count = max(min(hi - lo + 1, season.buckets), 1)
    if count >= season.buckets:
        return PhaseRange(0, season.buckets, season.buckets, period)
    return PhaseRange(lo % season.buckets, count, season.buckets, period)


def _span(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _offset(seconds: float, period_s: float) -> str:
    total = round(seconds)
    days, rest = divmod(total, 86_400)
    h, rest = divmod(rest, 3_600)
    m, s = divmod(rest, 60)
    clock = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{days}d {clock}" if period_s > 86_400 else (
        clock if total < 86_400 else "24:00:00")


@dataclass(frozen=True, eq=False)
class ReferenceRows:
    """A reference snapshot's feature rows and their event times (epoch seconds)."""

    frame: pd.DataFrame  # the spec's feature columns
    seconds: np.ndarray  # float64, one per row

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, spec: ModelSpec,
                   time_column: str = "event_timestamp") -> ReferenceRows:
        """The spec's features and ``time_column`` of ``frame`` (rows without a time are
        left out: they have no phase)."""
        if time_column not in frame.columns:
            raise KeyError(f"the reference has no event-time column {time_column!r}: "
                           "a declared cycle needs the reference's event times")
        times = pd.to_datetime(frame[time_column], utc=True)
        known = times.notna().to_numpy()
        ns = times[known].dt.as_unit("ns").astype("int64").to_numpy()
        return cls(frame=frame.loc[known, list(spec.names)].reset_index(drop=True),
                   seconds=ns / 1e9)

    def __len__(self) -> int:
        return len(self.seconds)


@dataclass(frozen=True, slots=True)
class PhaseChoice:
    """What one window is compared with under a declared cycle."""

    profile: ReferenceProfile
    range: PhaseRange  # the range compared with
    asked: PhaseRange  # the window's own range (before any widening)
    rows: int  # reference rows in the range

    @property
    def widened(self) -> bool:
        """Whether the window's range held too few reference rows and was widened."""
        return self.range != self.asked

    def label(self) -> str:
        """The report's ``reference_phase``: range, rows, and any widening."""
        text = f"{self.range.label()} ({self.rows} reference rows)"
        if self.widened:
            text += f", widened from {self.asked.label()}"
        return text


class SeasonalProfiles:
    """Per phase range, the profile of one snapshot's rows of that phase (cached)."""

    def __init__(self, profile: ReferenceProfile, spec: ModelSpec, rows: ReferenceRows,
                 season: Seasonality) -> None:
        self.profile = profile
        self.spec = spec
        self.rows = rows
        self.season = season
        width = season.period_s / season.buckets
        phase = np.mod(rows.seconds, season.period_s)
        bucket = np.minimum((phase // width).astype(np.int64), season.buckets - 1)
        self._counts = np.bincount(bucket, minlength=season.buckets)
        # rows in bucket order: a range's rows are one slice, or two when it wraps
        self._frame = rows.frame.take(np.argsort(bucket, kind="stable"))
        self._starts = np.concatenate([[0], np.cumsum(self._counts)])
        self._cache: dict[tuple[int, int], ReferenceProfile] = {}
        self._lock = threading.Lock()

    def rows_in(self, phase: PhaseRange) -> int:
        """Reference rows whose phase is in ``phase``."""
        return len(self.rows) if phase.whole else int(self._counts[phase.indexes()].sum())

    def select(self, start: datetime, end: datetime) -> PhaseChoice:
        """The profile for a window from ``start`` to ``end`` (event times)."""
        asked = window_range(start, end, self.season)
        chosen = asked
        while not chosen.whole and self.rows_in(chosen) < self.season.min_reference_rows:
            chosen = chosen.widened()
        if chosen != asked:
            log.info("%s: phase %s holds %d reference rows (< %d): compared with %s",
                     self.profile.snapshot_id, asked.label(), self.rows_in(asked),
                     self.season.min_reference_rows, chosen.label())
        return PhaseChoice(profile=self._profile(chosen), range=chosen, asked=asked,
                           rows=self.rows_in(chosen))

    def _profile(self, phase: PhaseRange) -> ReferenceProfile:
        if phase.whole:
            return self.profile
        key = (phase.first, phase.count)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        end = phase.first + phase.count
        parts = [self._frame.iloc[self._starts[phase.first]:self._starts[min(end, phase.buckets)]]]
        if end > phase.buckets:
            parts.append(self._frame.iloc[: self._starts[end - phase.buckets]])
        built = build_reference_profile(
            parts[0] if len(parts) == 1 else pd.concat(parts), self.spec,
            f"{self.profile.snapshot_id}#phase:{self.season.period_s:g}s/"
            f"{self.season.buckets}:{phase.first}+{phase.count}",
            n_bins=self.profile.n_bins,
        )
        with self._lock:
            self._cache[key] = built
        return built
