"""An ingest-service life: the real :class:`IngestService` over the test's embedded Feast
repo (SQLite online store, parquet offline files), features and labels from the broker.

``args``: bootstrap, prefix, state_dir, registry, markers, log, repo and project (the
test's Feast repo), ``final`` (run until nothing is buffered or waiting and the input is
quiet, then exit 0). Marker lines: ``batch <n> buffered <rows>`` after each handled
batch, ``flushing <rows>`` before and ``flushed <rows>`` after each push to Feast (all
before the commit), so kills land while rows are buffered, inside a push (online
writes, parquet rewrites) and between a push and its commit.
"""

from __future__ import annotations

from typing import Any

import feast  # noqa: F401 - imported by the fork server, not by each life

import services.features.feast_repo as feast_repo
from chaos.workers.common import MarkedService, Markers, hold_commits, settings_for, start_life
from services.features.ingest import PushBatch
from services.features.ingest_service import IndexRow, IngestService
from services.observability.setup import in_memory_telemetry
from streams.consumer import Inbound

MODEL = "fraud"
QUIET_S = 2.5
FLUSH_ROWS = 450  # rows over all views: a push every ~150 events
FLUSH_INTERVAL_S = 0.4


class MarkedIngest(MarkedService, IngestService):
    """The ingest service, marking its batches and its pushes."""

    def batch_marker(self, batch: list[Inbound[Any]]) -> str:
        return f"batch {len(batch)} buffered {self.buffer.rows}"

    def write(self, batches: list[PushBatch], unindexed: list[IndexRow]) -> int:
        """The writer thread's push, marked before and after."""
        rows = sum(len(batch.frame) for batch in batches)
        if rows:
            self.markers.mark(f"flushing {rows}")
        pushed = super().write(batches, unindexed)
        if pushed:
            self.markers.mark(f"flushed {pushed}")
        return pushed

    def settled(self) -> bool:
        """Everything pushed, no label waiting, and nothing new for a while."""
        idle = self.buffer.rows == 0 and self.buffer.pending_labels == 0
        return idle and self.quiet_for(QUIET_S)


def main(args: dict[str, Any]) -> None:
    start_life(args)
    settings = settings_for(args)
    store = feast_repo.open_repo("embedded", repo_path=args["repo"], project=args["project"])
    markers = Markers(args["markers"])
    service = MarkedIngest(settings, store=store, models=[MODEL], flush_rows=FLUSH_ROWS,
                           flush_interval_s=FLUSH_INTERVAL_S, batch_size=200,
                           telemetry=in_memory_telemetry("chaos-ingest"), markers=markers)
    hold_commits(service.loop, markers, float(args.get("commit_hold_s", 0.0)))
    if args.get("final"):
        service.run(until=service.settled)
        print(f"final: pushed={service.sink.rows} dead_lettered={service.loop.stats.dead_lettered}")
    else:
        service.run()
