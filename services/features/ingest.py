"""Pure core of the ingest service: validate events, join labels, batch rows per view.

No Kafka and no Feast here (the layout is a plain description read once from the
FeatureService). The loop in ``ingest_service`` feeds events in, pushes the frames
``take()`` returns, and commits only offsets whose rows are durable
(``OffsetTracker``).

Labels are stored stamped with their *feature event's* time and entity id, so a
training snapshot joins each label to the features as they were at prediction time.
A label whose features are not in memory is looked up in ``lookup`` (the durable
index of pushed events, :mod:`services.features.event_index`, so a restart loses no
join); if its features have not been seen at all it waits in a bounded buffer, and one
that waits too long (or is pushed out by newer ones) is rejected as ``label_unmatched``.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from services.features.feast_repo import (
    CREATED_COLUMN,
    LABEL_TIME_COLUMN,
    TIMESTAMP_COLUMN,
    ModelLayout,
    ViewLayout,
    arrow_schema,
)
from services.model.task import Task
from streams.contracts import FeatureEvent, LabelEvent

RejectReason = Literal[
    "unknown_model",
    "unknown_feature",
    "missing_feature",
    "wrong_type",
    "non_finite",
    "label_unmatched",
    "invalid_time",
    "invalid_value",
]


@dataclass(frozen=True, slots=True)
class Reject:
    """Why an event cannot be ingested (becomes the dead-letter ``reason``)."""

    reason: RejectReason
    detail: str


@dataclass(frozen=True, slots=True)
class PushBatch:
    """Rows for one push source: every batch-source column, ``created`` included.

    ``frame`` goes to the offline store: new parquet parts in the view's parts
    directory ``path``, typed by ``schema``. ``online`` (online views only) holds the
    newest row per entity key of ``frame``: the online store keeps one row per key, so
    the older rows of a batch would only be overwritten, at Feast's per-row cost.
    """

    push_source: str
    view: str
    frame: pd.DataFrame
    online: pd.DataFrame | None = None
    path: Path | None = None
    schema: Any = None
    """The parts' ``pyarrow.Schema`` (the view's batch-source columns)."""


class _Model:
    """Per-model lookup tables built once from the layout, and its buffered rows."""

    def __init__(self, layout: ModelLayout) -> None:
        self.layout = layout
        self.kinds = {f.name: f.kind for f in layout.spec.features}
        self.names = frozenset(self.kinds)
        self.numeric = tuple(f.name for f in layout.spec.numeric)
        self.categorical = tuple(f.name for f in layout.spec.categorical)
        self.numeric_values = _values_of(self.numeric)
        self.text_values = _values_of(self.categorical)
        self.events: list[FeatureEvent] = []
        self.labels: list[tuple[LabelEvent, str, datetime]] = []


def _values_of(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """``features -> (features[name] for name in names)`` as a tuple, in C for 2+ names."""
    if len(names) >= 2:
        return itemgetter(*names)
    return lambda features: tuple(features[name] for name in names)


def _check_features(model: _Model, features: Mapping[str, object]) -> Reject | None:
    if features.keys() != model.names:
        unknown = features.keys() - model.names
        if unknown:
            return Reject("unknown_feature", f"not in {model.layout.spec.model}: {sorted(unknown)}")
        missing = sorted(model.names - features.keys())
        return Reject("missing_feature", f"absent (send null for missing): {missing}")
    for name in model.numeric:
        value = features[name]
        if type(value) is float:
            if value - value != 0.0:  # NaN or infinite
                return Reject("non_finite", f"{name} is {value}")
        elif value is not None and (type(value) is not int):
            return Reject("wrong_type", f"{name} must be a number, got {type(value).__name__}")
    for name in model.categorical:
        value = features[name]
        if value is not None and type(value) is not str:
            return Reject("wrong_type", f"{name} must be a string, got {type(value).__name__}")
    return None


STORABLE_TIMES = (datetime(1678, 1, 1, tzinfo=UTC), datetime(2262, 1, 1, tzinfo=UTC))
"""Event times the stores can hold: Feast and pyarrow convert to nanoseconds, whose range
ends in 1677 and 2262 (the edge's configured range is normally far narrower)."""


def _fitting_labels(task: Task) -> frozenset[float] | None:
    """The label values of a classification ``task`` as floats; ``None`` for regression."""
    if task.kind == "regression":
        return None
    return frozenset(float(c) for c in (task.classes or (0, 1)))


def check_time(event_time: datetime) -> Reject | None:
    """``invalid_time`` for a time the stores cannot hold (a buffered row that fails every
    push would stop the service on each restart), else ``None``."""
    low, high = STORABLE_TIMES
    if event_time.tzinfo is None or not low <= event_time < high:
        return Reject("invalid_time", f"event_time {event_time.isoformat()} outside "
                                      f"[{low.date()}, {high.date()}) or without timezone")
    return None


def validate_feature_event(
    event: FeatureEvent, layouts: Mapping[str, ModelLayout]
) -> Reject | None:
    """``None`` when the event fits its model's FeatureService, else the reason."""
    layout = layouts.get(event.model)
    if layout is None:
        return Reject("unknown_model", f"no feature service for model {event.model!r}")
    return check_time(event.event_time) or _check_features(_Model(layout), event.features)


_BINARY = Task()


class IngestBuffer:
    """Accumulates valid events as columns per view; joins labels to their features.

    ``max_index`` bounds how many recent feature events are remembered for label
    joins (about 300 bytes each); ``max_pending`` bounds labels waiting for features,
    and ``label_wait`` (in event time, against the newest feature event seen) how long
    they wait. ``lookup`` finds events that are no longer (or, after a restart, not
    yet) in memory: ``event_id -> (entity_id, event_time)`` or ``None``.
    """

    def __init__(
        self,
        layouts: Mapping[str, ModelLayout],
        *,
        max_index: int = 500_000,
        max_pending: int = 100_000,
        label_wait: timedelta = timedelta(minutes=10),
        lookup: Callable[[str], tuple[str, datetime] | None] | None = None,
        tasks: Mapping[str, Task] | None = None,
    ) -> None:
        self._tasks = dict(tasks or {})  # per model; a label must fit it (default binary)
        # per model, the float labels that fit at once (None: any finite one, regression);
        # anything else gets the task's full check and its reason
        self._fitting = {name: _fitting_labels(self._tasks.get(name, _BINARY))
                         for name in layouts}
        self._models = {name: _Model(layout) for name, layout in layouts.items()}
        self._index: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        # labels waiting per event id (a repeated label waits beside the first), oldest first
        self._pending: OrderedDict[str, list[LabelEvent]] = OrderedDict()
        self._evicted: list[tuple[LabelEvent, Reject]] = []
        self._joined: list[str] = []
        self._max_index = max_index
        self._max_pending = max_pending
        self._label_wait = label_wait
        self._lookup = lookup
        self._newest: datetime | None = None

    # -- input ---------------------------------------------------------------------

    def add_features(self, event: FeatureEvent) -> Reject | None:
        """Validate and buffer one feature event; releases a label waiting for it."""
        model = self._models.get(event.model)
        if model is None:
            return Reject("unknown_model", f"no feature service for model {event.model!r}")
        reject = check_time(event.event_time) or _check_features(model, event.features)
        if reject is not None:
            return reject
        model.events.append(event)
        self._remember(event)
        waiting = self._pending.pop(event.event_id, None)
        if waiting is not None:
            for label in waiting:
                self._add_label_row(label, (event.entity_id, event.event_time))
            self._joined.append(event.event_id)
        return None

    def add_label(self, event: LabelEvent) -> Reject | Literal["pending"] | None:
        """Buffer one label: ``None`` when joined, ``"pending"`` while its features are unseen."""
        if event.model not in self._models:
            return Reject("unknown_model", f"no feature service for model {event.model!r}")
        label, fitting = event.label, self._fitting[event.model]
        fits = type(label) is float and (label - label == 0.0 if fitting is None
                                         else label in fitting)
        if not fits:  # the full checks, for their reasons
            if not math.isfinite(label):
                return Reject("non_finite", f"label is {label}")
            problem = self._tasks.get(event.model, _BINARY).label_problem(label)
            if problem is not None:
                return Reject("invalid_value", f"label: {problem}")
        bad_time = check_time(event.event_time)
        if bad_time is not None:
            return bad_time
        known = self._index.get(event.event_id)
        if known is None and self._lookup is not None:
            known = self._lookup(event.event_id)
        if known is not None:
            self._add_label_row(event, known)
            return None
        self._pending.setdefault(event.event_id, []).append(event)
        self._pending.move_to_end(event.event_id)
        while len(self._pending) > self._max_pending:
            _, old = self._pending.popitem(last=False)
            reject = Reject("label_unmatched", "pushed out of the pending-label buffer")
            self._evicted.extend((label, reject) for label in old)
        return "pending"

    def _remember(self, event: FeatureEvent) -> None:
        self._index[event.event_id] = (event.entity_id, event.event_time)
        if len(self._index) > self._max_index:
            self._index.popitem(last=False)
        if self._newest is None or event.event_time > self._newest:
            self._newest = event.event_time

    def _add_label_row(self, label: LabelEvent, known: tuple[str, datetime]) -> None:
        entity_id, event_time = known
        self._models[label.model].labels.append((label, entity_id, event_time))

    # -- output --------------------------------------------------------------------

    def expired(self) -> list[tuple[LabelEvent, Reject]]:
        """Labels given up on: pushed out, or older than ``label_wait`` behind the newest event."""
        out, self._evicted = self._evicted, []
        if self._newest is not None:
            cutoff = self._newest - self._label_wait
            while self._pending:
                event_id, waiting = next(iter(self._pending.items()))
                if waiting[-1].event_time >= cutoff:
                    break
                del self._pending[event_id]
                reject = Reject("label_unmatched", "no feature event within the wait")
                out.extend((label, reject) for label in waiting)
        return out

    def drain_joined(self) -> list[str]:
        """Event ids of pending labels that found their features since the last call."""
        out, self._joined = self._joined, []
        return out

    @property
    def rows(self) -> int:
        """Buffered rows over all views (what the next ``take`` pushes)."""
        return sum(
            len(m.events) * len(m.layout.views) + len(m.labels) for m in self._models.values()
        )

    @property
    def pending_events(self) -> int:
        """Event ids with labels waiting (what ``max_pending`` bounds; O(1))."""
        return len(self._pending)

    @property
    def pending_labels(self) -> int:
        """Labels waiting for their feature events."""
        return sum(len(waiting) for waiting in self._pending.values())

    def unknown(self, event_ids: Iterable[str]) -> set[str]:
        """Those of ``event_ids`` whose features are not in memory (a label of any
        other joins without ``lookup``)."""
        index = self._index
        return {event_id for event_id in event_ids if event_id not in index}

    def is_pending(self, event_id: str) -> bool:
        """Whether the label of ``event_id`` still waits for its features."""
        return event_id in self._pending

    def take(self, created: datetime | None = None) -> list[PushBatch]:
        """Everything buffered, as one frame per push source (sorted by event time).

        Each model's columns are built once (feature values read out of the events in
        one C-level pass, event times converted once) and shared by its views.
        """
        created = created or datetime.now(UTC)
        out: list[PushBatch] = []
        for model in self._models.values():
            events, model.events = model.events, []
            labels, model.labels = model.labels, []
            layout = model.layout
            if events:
                shared: dict[str, Any] = {
                    layout.event_key: [e.event_id for e in events],
                    layout.spec.entity: [e.entity_id for e in events],
                    TIMESTAMP_COLUMN: utc_microseconds([e.event_time for e in events]),
                }
                shared.update(_feature_columns(model, [e.features for e in events]))
                stamped = _constant_time(created, len(events))
                for view in layout.views:
                    names = (*view.join_keys, *view.features, TIMESTAMP_COLUMN)
                    out.append(_batch(view, {k: shared[k] for k in names}, stamped))
            if labels:
                columns: dict[str, Any] = {
                    layout.event_key: [lbl.event_id for lbl, _, _ in labels],
                    layout.spec.entity: [entity for _, entity, _ in labels],
                    LABEL_TIME_COLUMN: utc_microseconds([lbl.event_time for lbl, _, _ in labels]),
                    layout.spec.label: [lbl.label for lbl, _, _ in labels],
                    TIMESTAMP_COLUMN: utc_microseconds([t for _, _, t in labels]),
                }
                out.append(_batch(layout.labels, columns, _constant_time(created, len(labels))))
        return out


def _feature_columns(model: _Model, features: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """``{name: values}`` of ``features`` (each holds every name: validated on entry), as
    float64 (null -> NaN) and object arrays: one 2-D array per kind, filled in C."""
    out: dict[str, np.ndarray] = {}
    for names, values, dtype in ((model.numeric, model.numeric_values, np.float64),
                                 (model.categorical, model.text_values, object)):
        if names:
            table = np.array(list(map(values, features)), dtype=dtype).reshape(-1, len(names))
            out.update((name, table[:, i]) for i, name in enumerate(names))
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def utc_microseconds(times: list[datetime]) -> pd.DatetimeIndex:
    """Aware datetimes as a UTC index of microsecond resolution, for any year.

    Built from integer microseconds since the epoch: a nanosecond index (pandas' default)
    ends in 2262 (``OutOfBoundsDatetime`` on 2300-01-01), and converting
    ``0001-01-01T00:00:00+14:00`` to UTC through ``datetime`` lands in year 0.
    """
    values = np.array(
        [((t if t.tzinfo is not None else t.replace(tzinfo=UTC)) - _EPOCH) // _MICROSECOND
         for t in times],
        dtype=np.int64,
    )
    return pd.DatetimeIndex(values.astype("datetime64[us]")).tz_localize(UTC)


def _constant_time(moment: datetime, n: int) -> pd.DatetimeIndex:
    """``utc_microseconds([moment] * n)``, converting ``moment`` once."""
    micros = utc_microseconds([moment]).asi8[0]
    return pd.DatetimeIndex(np.full(n, micros, dtype=np.int64).astype("datetime64[us]")
                            ).tz_localize(UTC)


def _batch(view: ViewLayout, columns: dict[str, Any], created: pd.DatetimeIndex) -> PushBatch:
    """The view's frame from ``columns`` (time columns already converted)."""
    kinds = dict(zip(view.features, view.kinds, strict=True))
    frame: dict[str, object] = {}
    for name in view.columns:
        if name == CREATED_COLUMN:
            frame[name] = created
        elif name in (TIMESTAMP_COLUMN, LABEL_TIME_COLUMN):
            frame[name] = columns[name]
        elif kinds.get(name) == "numeric":
            frame[name] = np.asarray(columns[name], dtype=np.float64)  # None -> NaN
        else:
            frame[name] = np.asarray(columns[name], dtype=object)
    df = pd.DataFrame(frame).sort_values(TIMESTAMP_COLUMN, kind="stable", ignore_index=True)
    online = None
    if view.online:
        online = df.drop_duplicates(list(view.join_keys), keep="last", ignore_index=True)
    return PushBatch(push_source=view.push_source, view=view.name, frame=df, online=online,
                     path=view.path, schema=arrow_schema(view))


PartitionKey = tuple[str, int]


class OffsetTracker:
    """Which offsets are durable: commit up to (not including) the oldest held one.

    ``seen`` every consumed offset, ``hold`` those whose rows are not durable yet,
    ``release`` them once pushed (or dead-lettered). ``plan()`` gives the next offset
    to commit per partition, in the shape ``ConsumerLoop`` takes.
    """

    def __init__(self) -> None:
        self._next: dict[PartitionKey, int] = {}
        self._held: dict[PartitionKey, list[int]] = {}
        self._released: dict[PartitionKey, set[int]] = {}

    def seen(self, key: PartitionKey, offset: int) -> None:
        """Record a consumed offset."""
        if offset + 1 > self._next.get(key, 0):
            self._next[key] = offset + 1

    def hold(self, key: PartitionKey, offset: int) -> None:
        """Keep ``offset`` (and everything after it) from being committed."""
        heapq.heappush(self._held.setdefault(key, []), offset)

    def release(self, key: PartitionKey, offsets: Iterable[int]) -> None:
        """The rows of these offsets are durable now."""
        self._released.setdefault(key, set()).update(offsets)

    def plan(self) -> dict[PartitionKey, int]:
        """Next offset to commit per partition."""
        out: dict[PartitionKey, int] = {}
        for key, nxt in self._next.items():
            heap = self._held.get(key)
            done = self._released.get(key, set())
            while heap and heap[0] in done:
                done.discard(heapq.heappop(heap))
            out[key] = heap[0] if heap else nxt
        return out
