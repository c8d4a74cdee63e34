"""Write ingest batches: online through Feast, offline as new parquet parts.

Feast's offline push to a file source reads the whole parquet file and writes it back
(in place: a crash in between tears it), so its cost grows with the history and two
writers lose rows. The offline half is therefore written here, as new immutable parts
in the view's parts directory (:mod:`services.features.parts`), which the view's
FileSource reads through DuckDB (or any engine). Only the online half goes through
Feast. A view without a parts directory (``path`` unset) falls back to Feast's push.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.features.feast_repo import TIMESTAMP_COLUMN
from services.features.ingest import PushBatch
from services.features.parts import write_parts

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    import pyarrow as pa
    from feast import FeatureStore


@dataclass(slots=True)
class SinkStats:
    """Counters of what the sink pushed."""

    pushes: int = 0
    rows: int = 0
    seconds: float = 0.0
    parts: int = 0


def push_batches(
    store: FeatureStore, batches: Sequence[PushBatch], stats: SinkStats | None = None
) -> int:
    """Write each batch: its newest row per key online (online views), every row offline.

    Online first: if the offline write then fails, a retry of the same batch rewrites
    the same online values, and the offsets stay uncommitted until both succeeded. A
    retried batch may leave its rows in two parts; the point-in-time join keeps one.
    """
    from feast.data_source import PushMode

    rows = parts = 0
    started = time.perf_counter()
    for batch in batches:
        if batch.online is not None and len(batch.online):
            store.push(batch.push_source, batch.online, to=PushMode.ONLINE)
        if batch.path is not None:
            parts += len(append_parts(batch.path, batch.frame, batch.schema))
        else:
            store.push(batch.push_source, batch.frame, to=PushMode.OFFLINE)
        rows += len(batch.frame)
    if stats is not None:
        stats.pushes += len(batches)
        stats.rows += rows
        stats.parts += parts
        stats.seconds += time.perf_counter() - started
    return rows


def append_parts(root: Path, frame: pd.DataFrame, schema: pa.Schema | None = None) -> list[Path]:
    """Append ``frame`` to the parts directory ``root`` as new parts; returns them.

    Columns are taken in ``schema``'s order and cast to it (``frame`` must hold every
    one of them); without a schema the frame's own types are kept.
    """
    import pyarrow as pa

    if schema is not None:
        missing = [name for name in schema.names if name not in frame.columns]
        if missing:
            raise ValueError(f"{root.name}: rows lack the view's columns {missing}")
        table = pa.Table.from_pandas(frame[schema.names], preserve_index=False)
        table = table.cast(schema)
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    return write_parts(root, table, TIMESTAMP_COLUMN)
