"""Write ingest batches into Feast: the one writer of the offline parquet files.

An offline push to the file store reads and rewrites the whole parquet file, so
pushes must be few, large and from a single process (see DESIGN, Feast notes).
Feast's own file-store write truncates the file and writes it in place: a crash in
between leaves a torn parquet file and loses every row ever ingested. For the file
store the rows are therefore appended here, the way Feast does it (same columns, cast
to the file's schema) but into a temporary file renamed over the old one
(:func:`services.files.replacing`); other offline stores get Feast's push.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.features.ingest import PushBatch
from services.files import replacing

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore


@dataclass(slots=True)
class SinkStats:
    """Counters of what the sink pushed."""

    pushes: int = 0
    rows: int = 0
    seconds: float = 0.0


def push_batches(
    store: FeatureStore, batches: Sequence[PushBatch], stats: SinkStats | None = None
) -> int:
    """Push each batch: its newest row per key online (online views), every row offline.

    Online first: if the offline write then fails, a retry of the same batch rewrites
    the same online values, and the offsets stay uncommitted until both succeeded.
    """
    from feast.data_source import PushMode

    rows = 0
    started = time.perf_counter()
    for batch in batches:
        if batch.online is not None and len(batch.online):
            store.push(batch.push_source, batch.online, to=PushMode.ONLINE)
        if batch.path is not None and _file_offline_store(store):
            append_parquet(batch.path, batch.frame)
        else:
            store.push(batch.push_source, batch.frame, to=PushMode.OFFLINE)
        rows += len(batch.frame)
    if stats is not None:
        stats.pushes += len(batches)
        stats.rows += rows
        stats.seconds += time.perf_counter() - started
    return rows


def _file_offline_store(store: FeatureStore) -> bool:
    return getattr(store.config.offline_store, "type", None) in ("file", "dask")


def append_parquet(path: Path, frame: pd.DataFrame) -> int:
    """Append ``frame`` to the parquet file at ``path`` atomically; returns its rows.

    Columns are taken in the file's order and cast to its schema (``frame`` must hold
    every one of them); the old rows come first.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    previous = pq.read_table(path)
    missing = [name for name in previous.schema.names if name not in frame.columns]
    if missing:
        raise ValueError(f"{path.name}: rows lack the file's columns {missing}")
    table = pa.Table.from_pandas(frame[previous.schema.names], preserve_index=False)
    table = table.cast(previous.schema)
    combined = pa.concat_tables([previous, table])
    with replacing(path) as tmp:
        pq.write_table(combined, tmp)
    return combined.num_rows
