"""Durable event index: survives reopening, bounded, exact times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.features.event_index import EventIndex

T0 = datetime(2026, 3, 1, 1, 2, 3, 456_789, tzinfo=UTC)


def test_rows_survive_reopening_with_exact_times(tmp_path: Path) -> None:
    index = EventIndex(tmp_path / "index.sqlite3")
    assert index.put_many([("e1", "c1", T0), ("e2", "c2", T0 - timedelta(days=400))]) == 2
    index.close()
    reopened = EventIndex(tmp_path / "index.sqlite3")
    assert reopened.get("e1") == ("c1", T0)
    assert reopened.get("e2") == ("c2", T0 - timedelta(days=400))
    assert reopened.get("e3") is None
    assert len(reopened) == 2


def test_oldest_rows_are_dropped_beyond_the_bound(tmp_path: Path) -> None:
    index = EventIndex(tmp_path / "index.sqlite3", max_rows=3)
    index.put_many((f"e{i}", "c", T0 + timedelta(seconds=i)) for i in range(5))
    assert len(index) == 3
    assert index.get("e1") is None and index.get("e2") is not None
    index.put_many([("e2", "c", T0)])  # re-recorded: now the newest
    index.put_many([("e5", "c", T0)])
    assert index.get("e2") is not None and index.get("e3") is None
    assert index.put_many([]) == 0


def test_get_many_answers_as_get_does_across_chunks(tmp_path: Path) -> None:
    """Catches a batched lookup that drops ids past the first ``IN (…)`` chunk, or
    returns times that differ from ``get`` (zone, microseconds, pre-1970 rows)."""
    index = EventIndex(tmp_path / "index.sqlite3")
    old = T0 - timedelta(days=21_000)  # 1968
    rows = [(f"e{i}", f"c{i % 7}", old - timedelta(microseconds=i)) for i in range(1203)]
    index.put_many(rows)
    asked = [f"e{i}" for i in range(1300)] + ["e5", "missing"]
    found = index.get_many(asked)
    assert set(found) == {f"e{i}" for i in range(1203)}
    assert all(found[e] == index.get(e) for e in found)
    assert found["e1202"] == ("c5", old - timedelta(microseconds=1202))
    assert index.get_many([]) == {}
