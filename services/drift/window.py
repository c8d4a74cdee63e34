"""Per-model window accumulator: decoded feature rows in, closed windows out.

A window closes when it holds ``max_events`` rows, or when an event arrives whose
event time is ``max_seconds`` or more past the window's first event (that event then
opens the next window), whichever comes first. :meth:`WindowAccumulator.flush` closes
a partial window on demand (idle stream, shutdown, tests).

Adding a row is cheap on purpose (the Kafka loop must sustain hundreds of thousands of
events per second): values are appended to one flat Python list per window
(one ``operator.itemgetter`` call per row, no per-row numpy call) and converted to a
float64 matrix once, when the window closes. Values that are not finite numbers in a
numeric feature (strings, infinities) count as missing, and are counted per feature in
``ClosedWindow.invalid_by_feature`` (the drift report shows them).

Any aware event time is accepted without converting it through the platform's
``timestamp()`` (``0001-01-01T00:00:00+14:00`` is year 0 in UTC): epoch seconds come
from a subtraction, and window bounds are clamped to the representable range.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from services.drift.profile import summarize_sorted
from services.featurespec import ModelSpec
from streams.contracts import PartitionRange, Summary, WindowBounds


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A closed window: the numeric matrix, categorical columns and where it came from."""

    model: str
    numeric: np.ndarray  # (n_events, n_numeric) float64, NaN = missing
    categorical: dict[str, list[object]]  # per categorical feature, None = missing
    bounds: WindowBounds
    invalid: int = 0  # values in numeric features that are not finite numbers
    invalid_by_feature: dict[str, int] = field(default_factory=dict)

    @property
    def n_events(self) -> int:
        """Rows in the window."""
        return self.bounds.n_events


@dataclass(slots=True)
class _Open:
    flat: list[object] = field(default_factory=list)
    cats: list[list[object]] = field(default_factory=list)
    first_ts: float = 0.0
    min_ts: float = float("inf")
    max_ts: float = float("-inf")
    n: int = 0
    offsets: dict[tuple[str, int], list[int]] = field(default_factory=dict)


def window_summaries(window: ClosedWindow, spec: ModelSpec) -> dict[str, Summary]:
    """Per numeric feature, the window's summary statistics (one column-wise sort of the
    matrix). Categorical features have none here: their only summary, the missing
    share, is already in their drift statistics."""
    n = max(window.n_events, 1)
    out: dict[str, Summary] = {}
    if window.numeric.size:
        ordered = np.sort(window.numeric, axis=0)  # NaN last
        present = window.numeric.shape[0] - np.count_nonzero(np.isnan(ordered), axis=0)
        for j, f in enumerate(spec.numeric):
            k = int(present[j])
            out[f.name] = summarize_sorted(ordered[:k, j], (n - k) / n)
    return out


class WindowAccumulator:
    """Builds windows of one model's events (see module docstring)."""

    def __init__(self, spec: ModelSpec, max_events: int = 5_000, max_seconds: float = 60.0):
        if max_events < 2 or max_seconds <= 0:
            raise ValueError("max_events must be >= 2 and max_seconds > 0")
        self.spec = spec
        self.max_events = max_events
        self.max_seconds = float(max_seconds)
        self._num_names = tuple(f.name for f in spec.numeric)
        self._cat_names = tuple(f.name for f in spec.categorical)
        n = len(self._num_names)
        pick = operator.itemgetter(*self._num_names) if n else (lambda _: ())
        self._pick = pick if n != 1 else (lambda f: (pick(f),))
        self._open = self._new()

    def _new(self) -> _Open:
        return _Open(cats=[[] for _ in self._cat_names])

    @property
    def n_open(self) -> int:
        """Rows in the open window."""
        return self._open.n

    def open_first_offsets(self) -> dict[tuple[str, int], int]:
        """First offset per (topic, partition) still in the open window (not yet covered
        by a closed window): committing must stay below these."""
        return {tp: r[0] for tp, r in self._open.offsets.items()}

    def add(
        self,
        event_time: datetime | float,
        features: Mapping[str, object],
        topic: str = "",
        partition: int = 0,
        offset: int = -1,
    ) -> ClosedWindow | None:
        """Append one event; returns the window this event closed, if any.

        ``event_time`` is a datetime (naive means UTC) or epoch seconds.
        """
        if isinstance(event_time, datetime):
            ts = _epoch(event_time)
        else:
            ts = float(event_time)
            if ts != ts:  # NaN: no place in time; the window's first event time stands in
                ts = self._open.first_ts if self._open.n else 0.0
        w = self._open
        closed = None
        if w.n and ts - w.first_ts >= self.max_seconds:
            closed = self._close()
            w = self._open
        if not w.n:
            w.first_ts = ts
        try:  # every feature present: one C call for all of them
            w.flat.extend(self._pick(features))
        except KeyError:
            w.flat.extend(map(features.get, self._num_names))
        if self._cat_names:
            get = features.get
            for col, name in zip(w.cats, self._cat_names, strict=True):
                col.append(get(name))
        if ts < w.min_ts:
            w.min_ts = ts
        if ts > w.max_ts:
            w.max_ts = ts
        if offset >= 0:
            r = w.offsets.get((topic, partition))
            if r is None:
                w.offsets[(topic, partition)] = [offset, offset]
            else:
                if offset < r[0]:
                    r[0] = offset
                if offset > r[1]:
                    r[1] = offset
        w.n += 1
        if w.n >= self.max_events:  # max_events >= 2: never both rules on one event
            return self._close()
        return closed

    def flush(self) -> ClosedWindow | None:
        """Close the open window now, if it holds any row."""
        return self._close() if self._open.n else None

    def _close(self) -> ClosedWindow:
        w = self._open
        self._open = self._new()
        k = len(self._num_names)
        matrix, invalid = _to_matrix(w.flat, w.n, k)
        by_feature = {name: int(c) for name, c in zip(self._num_names, invalid, strict=True) if c}
        bounds = WindowBounds(
            start_time=_from_epoch(w.min_ts),
            end_time=_from_epoch(w.max_ts),
            n_events=w.n,
            offsets=[
                PartitionRange(topic=t, partition=p, first_offset=r[0], last_offset=r[1])
                for (t, p), r in sorted(w.offsets.items())
            ],
        )
        return ClosedWindow(
            model=self.spec.model,
            numeric=matrix,
            categorical=dict(zip(self._cat_names, w.cats, strict=True)),
            bounds=bounds,
            invalid=int(invalid.sum()),
            invalid_by_feature=by_feature,
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_TS = (datetime.min.replace(tzinfo=UTC) - _EPOCH).total_seconds() + 86_400
_MAX_TS = (datetime.max.replace(tzinfo=UTC) - _EPOCH).total_seconds() - 86_400


def _epoch(t: datetime) -> float:
    """Epoch seconds of ``t`` (naive means UTC), for any year, without ``timestamp()``."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) / timedelta(seconds=1)


def _from_epoch(ts: float) -> datetime:
    """The UTC datetime of ``ts``, clamped to what ``datetime`` can hold."""
    return _EPOCH + timedelta(seconds=min(max(ts, _MIN_TS), _MAX_TS))


def _to_matrix(flat: list[object], n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat row-major values to an ``(n, k)`` float64 matrix (None -> NaN).

    Also returns, per column, how many values were invalid (not a finite number); they
    are NaN (missing) in the matrix.
    """
    if k == 0:
        return np.empty((n, 0)), np.zeros(0, dtype=np.int64)
    try:
        matrix = np.array(flat, dtype=np.float64).reshape(n, k)
        invalid = np.zeros(k, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        nan = float("nan")
        clean: list[float] = []
        bad: list[bool] = []
        for v in flat:
            if v is None:
                clean.append(nan)
                bad.append(False)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                try:
                    clean.append(float(v))
                    bad.append(False)
                except OverflowError:  # an int beyond float range
                    clean.append(nan)
                    bad.append(True)
            else:
                clean.append(nan)
                bad.append(True)
        matrix = np.array(clean, dtype=np.float64).reshape(n, k)
        invalid = np.array(bad, dtype=bool).reshape(n, k).sum(axis=0).astype(np.int64)
    infinite = np.isinf(matrix)
    if infinite.any():
        invalid = invalid + infinite.sum(axis=0)
        matrix[infinite] = np.nan
    return matrix, invalid
