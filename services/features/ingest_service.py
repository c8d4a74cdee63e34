"""``driftloop run ingest``: features and labels from Kafka into Feast.

One consumer group reads the ``features`` and ``labels`` topics. Valid events are
buffered by the pure :class:`~services.features.ingest.IngestBuffer`; invalid ones go
to the dead-letter topic with a typed reason. The buffer is pushed to Feast (online
and offline; labels offline only) when it holds ``flush_rows`` rows or is
``flush_interval_s`` old, and only then are the offsets of its events committed.
Each push records ``driftloop.ingest.freshness_lag`` per model: the age of the oldest
feature event it wrote. Labels still waiting for their features hold their offsets
back, so a crash re-reads them; every pushed feature event is recorded in a durable
index (:mod:`services.features.event_index`, in the state directory) before its offset
is committed, so a label that arrives after a restart still finds its features. The
offline rows are appended as new parquet parts (:mod:`services.features.parts`), so a
push costs the same whatever the history, and several ingest consumers may share one
offline store.

Flushes are large (150,000 rows, about 50,000 events with their labels) because each
writes the newest state of every card it touched online, and with a few thousand
cards nearly every flush touches nearly all of them: fewer, larger flushes write
fewer online rows per event (``benchmarks/ingest.md``). Freshness does not suffer:
at a lower rate the 5 s timer flushes first; the buffer holds about 300 bytes per row.

A due flush is written by a writer thread while the loop goes on consuming into a fresh
buffer (SQLite, Arrow, the parquet writer and fsync release the GIL, so on two cores
the write and the decoding overlap instead of adding up). One write is in flight at a
time; a buffer that reaches twice ``flush_rows`` meanwhile waits for it. Its offsets
are released only once it has finished. A failed write is retried with the same rows
(``write_attempts`` in all); then the loop stops with :class:`StoreWriteFailed` (nothing
committed past those rows: a restart re-reads them), since valid events must never be
dead-lettered for a store outage. ``flush()`` (a revocation, a shutdown) waits for the
write in flight and writes the rest before it returns.

In a backlog the labels topic runs ahead of the features (its small messages come many
per fetch): labels waiting for features beyond ``max_pending_labels`` would be pushed
out as ``label_unmatched``. So at half that bound the labels topic is paused (its
messages wait in the broker) and read again at a quarter; ``/healthz`` shows it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.features.event_index import EventIndex
from services.features.feast_repo import ensure_offline_parts, load_layout, open_store
from services.features.ingest import IngestBuffer, OffsetTracker, PushBatch, Reject
from services.features.sink import SinkStats, push_batches
from services.runtime import StreamService
from streams.consumer import CommitPlan, HandlerBroken, Inbound, PartitionKey
from streams.contracts import FeatureEvent, LabelEvent
from streams.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

IndexRow = tuple[str, str, datetime]
"""``(event_id, entity_id, event_time)`` of a pushed feature event, for the event index."""


class StoreWriteFailed(HandlerBroken):
    """The stores refused the same rows ``write_attempts`` times: stop, commit nothing more."""


@dataclass(slots=True)
class _Write:
    """One flush on its way to the stores, and what its success makes durable."""

    batches: list[PushBatch]
    unindexed: list[IndexRow]
    offsets: dict[PartitionKey, list[int]]
    oldest: dict[str, datetime]
    future: Future[int] | None = None
    attempts: int = 0
    last_error: str = ""


class IngestService(StreamService):
    """Kafka loop around the ingest core and the Feast sink."""

    name = "ingest"

    def __init__(
        self,
        settings: Settings,
        *,
        store: FeatureStore | None = None,
        models: Sequence[str] | None = None,
        flush_rows: int = 150_000,
        flush_interval_s: float = 5.0,
        write_attempts: int = 3,
        max_pending_labels: int = 100_000,
        **kwargs: Any,
    ) -> None:
        self.store = store or open_store(settings)
        names = models or [s.name for s in self.store.list_feature_services()]
        self.layouts = {m: load_layout(self.store, m) for m in names}
        for layout in self.layouts.values():
            for view in (*layout.views, layout.labels):
                ensure_offline_parts(self.store, self.store.get_feature_view(view.name))
        self.index = EventIndex(Path(settings.state_dir) / "ingest" / "event-index.sqlite3")
        self.buffer = IngestBuffer(self.layouts, lookup=self._lookup,
                                   max_pending=max_pending_labels,
                                   tasks={m: settings.model(m).task for m in self.layouts})
        # labels waiting for their features: past half the bound the labels topic is
        # paused (it runs ahead in a backlog: small messages, fetched many at a time),
        # below a quarter it is read again; none is pushed out of the bound for it
        self._labels_topic = settings.topic("labels")
        self._pause_labels_at = max(1, max_pending_labels // 2)
        self._resume_labels_at = max_pending_labels // 4
        # index rows of this batch's labels, read in one pass (the index only changes
        # in flush, after the batch's events are buffered)
        self._prefetched: dict[str, tuple[str, datetime]] = {}
        self._asked: set[str] = set()
        self._unindexed: list[IndexRow] = []
        self.offsets = OffsetTracker()
        self.sink = SinkStats()
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self.write_attempts = max(1, write_attempts)
        # one writer thread: every store write (online, parts, index) happens on it
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write")
        self._in_flight: _Write | None = None
        self._refused = False  # a write failed for good: the loop is stopping, write no more
        self._buffered: dict[PartitionKey, list[int]] = {}
        self._pending: dict[str, list[Inbound[Any]]] = {}  # labels waiting, by event id
        # oldest buffered feature event time per model: its age at push is the freshness lag
        self._oldest: dict[str, datetime] = {}
        self._last_flush = time.monotonic()
        super().__init__(
            settings,
            group_id="driftloop-ingest",
            topics={settings.topic("features"): FeatureEvent, settings.topic("labels"): LabelEvent},
            **kwargs,
        )

    def handle_batch(self, batch: list[Inbound[Any]]) -> CommitPlan | None:
        """Buffer the batch, dead-letter rejects, flush when due; commit what is pushed.

        Feature events go in before the labels of the same batch (the topics are read
        side by side, so a label often comes back in the same batch as, or just before,
        its features): such a label joins in memory instead of looking in the event
        index and waiting. Each message is still handled once, offsets as before.
        """
        self._collect(wait=False)  # a write that failed for good stops here, before buffering
        features = [i for i in batch if isinstance(i.event, FeatureEvent)]
        if len(features) < len(batch):
            labels = [i for i in batch if not isinstance(i.event, FeatureEvent)]
            batch = features + labels
            # only labels whose features are neither in memory nor in this batch
            asked = {i.event.event_id for i in labels}
            asked.difference_update(i.event.event_id for i in features)
            self._asked = self.buffer.unknown(asked)
            self._prefetched = self.index.get_many(self._asked) if self._asked else {}
        seen, hold = self.offsets.seen, self.offsets.hold
        add_features, add_label = self.buffer.add_features, self.buffer.add_label
        oldest, buffered = self._oldest, self._buffered
        for inbound in batch:
            message = inbound.message  # read once: the Inbound properties each call into it
            key = (message.topic(), message.partition())
            offset = message.offset()
            seen(key, offset)
            event = inbound.event
            is_features = type(event) is FeatureEvent
            outcome = add_features(event) if is_features else add_label(event)
            if isinstance(outcome, Reject):
                self.loop.dead_letter(message, outcome.reason, outcome.detail)
                continue
            hold(key, offset)
            if is_features:
                self._unindexed.append((event.event_id, event.entity_id, event.event_time))
                first = oldest.get(event.model)
                if first is None or event.event_time < first:
                    oldest[event.model] = event.event_time
            if outcome == "pending":
                self._pending.setdefault(event.event_id, []).append(inbound)
            else:
                buffered.setdefault(key, []).append(offset)
        self._prefetched, self._asked = {}, set()
        for event_id in self.buffer.drain_joined():
            for joined in self._pending.pop(event_id, []):
                key = (joined.topic, joined.partition)
                self._buffered.setdefault(key, []).append(joined.offset)
        for label, reject in self.buffer.expired():
            for given_up in self._pending.pop(label.event_id, []):  # repeats: all at once
                self.loop.dead_letter(given_up.message, reject.reason, reject.detail)
                self.offsets.release((given_up.topic, given_up.partition), [given_up.offset])
        self._pace_labels()
        self._collect(wait=False)
        rows = self.buffer.rows
        due = time.monotonic() - self._last_flush >= self.flush_interval_s
        if rows >= self.flush_rows or (due and rows):
            if self._in_flight is not None and rows >= 2 * self.flush_rows:
                self._collect(wait=True)  # bounded memory: wait for the writer
            if self._in_flight is None:
                self._start_write()
        return self.offsets.plan()

    def _pace_labels(self) -> None:
        """Pause the labels topic while too many labels wait for their features."""
        pending = self.buffer.pending_events
        paused = self._labels_topic in self.loop.paused_topics()
        if not paused and pending >= self._pause_labels_at:
            log.info("ingest: %d labels wait for their features; pausing %s",
                     pending, self._labels_topic)
            self.loop.pause_topic(self._labels_topic)
        elif paused and pending <= self._resume_labels_at:
            self.loop.resume_topic(self._labels_topic)

    def _lookup(self, event_id: str) -> tuple[str, datetime] | None:
        """The buffer's event-index lookup: this batch's prefetched rows, else the index."""
        if event_id in self._asked:
            return self._prefetched.get(event_id)
        return self.index.get(event_id)

    def flush(self) -> int:
        """Write everything buffered and wait for it (and for the write in flight);
        returns the rows this call wrote. Their offsets are released on return."""
        self._collect(wait=True)
        if not self._start_write():
            return 0
        batches = self._in_flight.batches if self._in_flight else []
        self._collect(wait=True)
        return sum(len(batch.frame) for batch in batches)

    def _start_write(self) -> bool:
        """Hand the buffer to the writer thread; ``False`` when there was nothing to write."""
        self._last_flush = time.monotonic()
        batches = self.buffer.take(created=datetime.now(UTC))
        if not batches and not self._buffered:
            return False
        write = _Write(batches, self._unindexed, self._buffered, self._oldest)
        self._unindexed, self._buffered, self._oldest = [], {}, {}
        self._submit(write)
        return True

    def _submit(self, write: _Write) -> None:
        write.attempts += 1
        write.future = self._writer.submit(self.write, write.batches, write.unindexed)
        self._in_flight = write

    def write(self, batches: list[PushBatch], unindexed: list[IndexRow]) -> int:
        """Push ``batches`` to Feast and record their events in the index (the writer
        thread's work; the index beside the push, both finished on return)."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-index") as pool:
            indexed = pool.submit(self.index.put_many, unindexed)
            rows = push_batches(self.store, batches, self.sink) if batches else 0
            indexed.result()
        return rows

    def _collect(self, *, wait: bool) -> None:
        """Collect the write in flight once it has finished (at once with ``wait``):
        release its offsets, or retry it, or stop after ``write_attempts`` failures."""
        write = self._in_flight
        while write is not None and write.future is not None:
            if not wait and not write.future.done():
                return
            try:
                rows = write.future.result()
            except Exception as exc:
                write.last_error = f"{type(exc).__name__}: {exc}"
                if write.attempts >= self.write_attempts:
                    self._in_flight = None
                    self._refused = True
                    raise StoreWriteFailed(
                        f"ingest: the stores refused {write.attempts} writes of the same "
                        f"{sum(len(b.frame) for b in write.batches)} rows (last: "
                        f"{write.last_error}); stopping with their offsets uncommitted"
                    ) from exc
                log.warning("ingest: write failed (try %d of %d), retrying: %s",
                            write.attempts, self.write_attempts, write.last_error)
                time.sleep(min(0.5 * 2 ** (write.attempts - 1), 5.0))
                self._submit(write)
                continue
            self._in_flight = None
            self._written(write, rows)
            return

    def _written(self, write: _Write, rows: int) -> None:
        """A write has finished: its offsets may be committed, its freshness recorded."""
        pushed_at = datetime.now(UTC)
        for model, oldest in write.oldest.items():
            # one point per model and push: the age of its oldest row, now in the store
            self.metrics.record_freshness(model, (pushed_at - oldest).total_seconds())
        for key, offsets in write.offsets.items():
            self.offsets.release(key, offsets)
        if rows:
            log.info("pushed %d rows in %d batches", rows, len(write.batches))

    def on_revoke(self, partitions: list[PartitionKey]) -> CommitPlan | None:
        """Push what is buffered so the partitions leave with their work committed
        (nothing, once the stores refused a write: the next life re-reads it)."""
        if self._refused:
            return None
        self.flush()
        return self.offsets.plan()

    def health_status(self) -> tuple[str, dict[str, Any]]:
        """Counters for ``/healthz``."""
        return "ok", {
            "consumed": self.loop.stats.consumed,
            "dead_lettered": self.loop.stats.dead_lettered,
            "pushed_rows": self.sink.rows,
            "pending_labels": self.buffer.pending_labels,
            "labels_paused": self._labels_topic in self.loop.paused_topics(),
        }


def build(settings: Settings) -> IngestService:
    """Factory for ``driftloop run ingest``."""
    return IngestService(settings)
