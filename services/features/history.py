"""Write a generated history frame into the offline store (the first training data).

The first load writes the parquet batch files directly (one write per view instead
of a push that rereads the file), with ``created`` set to the row's own event time
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
from services.files import replacing

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
    """Write ``frame`` (from ``Generator.history``) to each view's parquet file.

    ``mode="append"`` keeps the rows already there. ``online=True`` also writes each
    key's latest row of the online views to the online store. Returns rows per view.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = load_layout(store, model)
    parts = [(v, TIMESTAMP_COLUMN) for v in layout.views] + [(layout.labels, LABEL_TIME_COLUMN)]
    written: dict[str, int] = {}
    for view, created_from in parts:
        schema = arrow_schema(view)
        table = pa.Table.from_pandas(
            view_frame(frame, view, created_from), schema=schema, preserve_index=False
        )
        if mode == "append" and view.path.exists():
            table = pa.concat_tables([pq.read_table(view.path).cast(schema), table])
        with replacing(view.path) as tmp:
            pq.write_table(table, tmp)
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
