"""Per-model window accumulator: decoded feature rows in, closed windows out.

A window closes when it holds ``max_events`` rows, or when an event arrives whose
event time is ``max_seconds`` or more past the window's first event (that event then
opens the next window), whichever comes first. :meth:`WindowAccumulator.flush` closes
a partial window on demand (idle stream, shutdown, tests).

Adding a row is cheap on purpose (the Kafka loop must sustain hundreds of thousands of
events per second): values are appended to one flat Python list per window
(one ``operator.itemgetter`` call per row, no per-row numpy call) and converted to a
float64 matrix once, when the window closes. Values that are not numbers in a
numeric feature count as missing (and are counted in ``ClosedWindow.invalid``).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from services.featurespec import ModelSpec
from streams.contracts import PartitionRange, WindowBounds


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A closed window: the numeric matrix, categorical columns and where it came from."""

    model: str
    numeric: np.ndarray  # (n_events, n_numeric) float64, NaN = missing
    categorical: dict[str, list[object]]  # per categorical feature, None = missing
    bounds: WindowBounds
    invalid: int = 0  # non-numeric values found in numeric features

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
            ts = event_time.timestamp() if event_time.tzinfo is not None else _epoch(event_time)
        else:
            ts = float(event_time)
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
        bounds = WindowBounds(
            start_time=datetime.fromtimestamp(w.min_ts, UTC),
            end_time=datetime.fromtimestamp(w.max_ts, UTC),
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
            invalid=invalid,
        )


def _epoch(t: datetime) -> float:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _to_matrix(flat: list[object], n: int, k: int) -> tuple[np.ndarray, int]:
    """Flat row-major values to an ``(n, k)`` float64 matrix (None -> NaN)."""
    if k == 0:
        return np.empty((n, 0)), 0
    try:
        return np.array(flat, dtype=np.float64).reshape(n, k), 0
    except (TypeError, ValueError):
        pass
    invalid = 0
    clean: list[float] = []
    nan = float("nan")
    for v in flat:
        if v is None:
            clean.append(nan)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            clean.append(float(v))
        else:
            invalid += 1
            clean.append(nan)
    return np.array(clean, dtype=np.float64).reshape(n, k), invalid
