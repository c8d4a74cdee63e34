"""Write ingest batches into Feast: the one writer of the offline parquet files.

An offline push to the file store reads and rewrites the whole parquet file, so
pushes must be few, large and from a single process (see DESIGN, Feast notes).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.features.ingest import PushBatch

if TYPE_CHECKING:
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
        store.push(batch.push_source, batch.frame, to=PushMode.OFFLINE)
        rows += len(batch.frame)
    if stats is not None:
        stats.pushes += len(batches)
        stats.rows += rows
        stats.seconds += time.perf_counter() - started
    return rows
