"""Write a generated history frame into the offline store (the first training data).

The first load writes each view's parquet parts directly (one part per event date),
with ``created`` set to the row's own event time
(features) or label time (labels), so the same history always gives the same files.
Later data arrives through the ingest service's pushes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import pandas as pd

from services.features.feast_repo import (
    CREATED_COLUMN,
    LABEL_TIME_COLUMN,
    TIMESTAMP_COLUMN,
    ViewLayout,
    arrow_schema,
    load_layout,
)
from services.features.parts import ensure_parts, list_parts, write_parts

if TYPE_CHECKING:
    from feast import FeatureStore


def view_frame(frame: pd.DataFrame, view: ViewLayout, created_from: str) -> pd.DataFrame:
    """The columns of ``view``'s batch source taken from a generated frame."""
    out = frame[[c for c in view.columns if c != CREATED_COLUMN]].copy()
    out[CREATED_COLUMN] = frame[created_from]
    return out[list(view.columns)]


def write_history(
    store: FeatureStore,
    frame: pd.DataFrame,
    *,
    model: str = "fraud",
    mode: Literal["overwrite", "append"] = "overwrite",
    online: bool = False,
) -> dict[str, int]:
    """Write ``frame`` (from ``Generator.history``) to each view's parts directory.

    ``mode="append"`` adds parts beside those already there; ``"overwrite"`` removes
    the old parts once the new ones are written (a reader in between sees both: this is
    a first load, not a live path). ``online=True`` also writes each key's latest row
    of the online views to the online store. Returns the rows written per view.
    """
    import pyarrow as pa

    layout = load_layout(store, model)
    parts = [(v, TIMESTAMP_COLUMN) for v in layout.views] + [(layout.labels, LABEL_TIME_COLUMN)]
    written: dict[str, int] = {}
    for view, created_from in parts:
        schema = arrow_schema(view)
        table = pa.Table.from_pandas(
            view_frame(frame, view, created_from), schema=schema, preserve_index=False
        )
        old = list_parts(view.path) if mode == "overwrite" else []
        write_parts(view.path, table, TIMESTAMP_COLUMN)
        for part in old:
            part.unlink(missing_ok=True)
            if part.parent.is_dir() and not any(part.parent.iterdir()):
                part.parent.rmdir()
        ensure_parts(view.path, schema)
        written[view.name] = table.num_rows
    if online:
        for view in layout.views:
            latest = (
                view_frame(frame, view, TIMESTAMP_COLUMN)
                .sort_values(TIMESTAMP_COLUMN)
                .drop_duplicates(list(view.join_keys), keep="last")
            )
            store.write_to_online_store(view.name, latest.drop(columns=[CREATED_COLUMN]))
    return written
