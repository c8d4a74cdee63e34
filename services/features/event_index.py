"""Durable index of ingested feature events, for joining labels that arrive later.

A label is stored with its feature event's entity id and time. The ingest buffer keeps
recent events in memory, but a label can arrive after its features were pushed and
their offsets committed, by a process that has since restarted: without this index
that label could never be joined. After each push, the service records every pushed
event here (before it commits the offsets), so the index holds at least every event
whose offset is committed.

SQLite in the service's state directory (WAL, ``synchronous=FULL``: a committed offset
must never refer to an index row a power cut could take back). Bounded: beyond
``max_rows`` the oldest rows are dropped; their late labels wait, then are
dead-lettered as ``label_unmatched``, as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feature_events (
    event_id TEXT PRIMARY KEY,
    entity_id TEXT NOT NULL,
    event_time_us INTEGER NOT NULL
)
"""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHUNK = 500
"""Ids per ``IN (…)`` query (SQLite allows 32,766 parameters; small is as fast)."""


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class EventIndex:
    """``event_id -> (entity_id, event_time)`` of pushed feature events, on disk."""

    def __init__(self, path: Path | str, *, max_rows: int = 2_000_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        # lookups on a connection of their own: the service writes from its writer thread
        # while the loop reads (WAL: a reader sees committed rows, never waits for a writer)
        self._reader = sqlite3.connect(self.path, check_same_thread=False)

    def put_many(self, events: Iterable[tuple[str, str, datetime]]) -> int:
        """Record ``(event_id, entity_id, event_time)`` rows in one transaction.

        Inserted in id order (stable: a repeated id keeps its last row): random ids in
        arrival order scatter over the id index's pages, sorted ones walk it once
        (about a third less CPU per row). Eviction by age stays per flush.
        """
        rows = [(event_id, entity, _micros(when)) for event_id, entity, when in events]
        if not rows:
            return 0
        rows.sort(key=itemgetter(0))
        with self._db:  # one transaction: committed on success, rolled back on error
            self._db.executemany(
                "INSERT OR REPLACE INTO feature_events VALUES (?, ?, ?)", rows)
            newest = self._db.execute("SELECT MAX(rowid) FROM feature_events").fetchone()[0]
            if newest is not None and newest > self.max_rows:
                self._db.execute("DELETE FROM feature_events WHERE rowid <= ?",
                                 (newest - self.max_rows,))
        return len(rows)

    def get(self, event_id: str) -> tuple[str, datetime] | None:
        """The event's entity id and time, or ``None`` when it was never pushed (or dropped)."""
        row = self._reader.execute(
            "SELECT entity_id, event_time_us FROM feature_events WHERE event_id = ?",
            (event_id,)).fetchone()
        if row is None:
            return None
        entity, micros = row
        return entity, datetime.fromtimestamp(micros // 1_000_000, UTC).replace(
            microsecond=micros % 1_000_000)

    def get_many(self, event_ids: Iterable[str]) -> dict[str, tuple[str, datetime]]:
        """:meth:`get` of many ids in a few queries: the ids found, with their rows."""
        ids = list(dict.fromkeys(event_ids))
        out: dict[str, tuple[str, datetime]] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for event_id, entity, micros in self._reader.execute(
                    "SELECT event_id, entity_id, event_time_us FROM feature_events"
                    f" WHERE event_id IN ({marks})", chunk):
                out[event_id] = entity, _EPOCH + timedelta(microseconds=micros)
        return out

    def __len__(self) -> int:
        return int(self._reader.execute("SELECT COUNT(*) FROM feature_events").fetchone()[0])

    def close(self) -> None:
        """Close the database (the index stays on disk)."""
        self._reader.close()
        self._db.close()
