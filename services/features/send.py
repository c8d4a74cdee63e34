"""Turn checked history rows into ``feature_event/1`` and ``label_event/1`` events.

A row of a prepared chunk (:func:`services.features.load.prepare_chunk`) becomes one
feature event (its event id, entity key, event time and features; a missing numeric
value is ``null``) and, when it has a label and labels are wanted, one label event
with the same event id, stamped with the row's label time. The replay
(:func:`services.features.replay.replay`) sends them: labels after their features,
once the stream's event time reaches their label time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from services.features.feast_repo import LABEL_TIME_COLUMN, TIMESTAMP_COLUMN, ModelLayout
from streams.contracts import FeatureEvent, LabelEvent


def _column(frame: pd.DataFrame, name: str, numeric: bool) -> list[Any]:
    if numeric:
        values = frame[name].to_numpy(dtype=np.float64)
        return [None if v != v else float(v) for v in values]  # NaN -> null
    return frame[name].tolist()


def row_events(
    frame: pd.DataFrame, layout: ModelLayout, *, labels: bool = True
) -> Iterator[tuple[FeatureEvent, LabelEvent | None]]:
    """One ``(feature event, label event or None)`` per row of a prepared chunk."""
    spec = layout.spec
    names = spec.names
    numeric = {f.name for f in spec.numeric}
    columns = [_column(frame, name, name in numeric) for name in names]
    ids = frame[layout.event_key].tolist()
    entities = frame[spec.entity].tolist()
    times = pd.DatetimeIndex(frame[TIMESTAMP_COLUMN]).to_pydatetime()
    label_times = pd.DatetimeIndex(frame[LABEL_TIME_COLUMN]).to_pydatetime()
    values = frame[spec.label].to_numpy(dtype=np.float64)
    for i, event_id in enumerate(ids):
        feature = FeatureEvent(
            event_id=event_id, model=spec.model, entity_id=entities[i], event_time=times[i],
            features={name: column[i] for name, column in zip(names, columns, strict=True)},
        )
        label = None
        if labels and values[i] == values[i]:
            label = LabelEvent(event_id=event_id, model=spec.model, label=float(values[i]),
                               event_time=label_times[i])
        yield feature, label
