"""Compaction merges a date's parts while readers and writers go on: no duplicates, no gaps."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import services.features.parts as parts
from services.features.compact import CompactionBusy, _compactor, compact_view, list_parts_in
from services.features.sink import append_parts

T0 = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
SCHEMA = pa.schema([("event_id", pa.string()), ("amount", pa.float64()),
                    ("event_timestamp", pa.timestamp("us", tz="UTC")),
                    ("created", pa.timestamp("us", tz="UTC"))])


def _append(root: Path, ids: list[str], at: datetime) -> None:
    times = pd.to_datetime([at + timedelta(seconds=i) for i in range(len(ids))], utc=True)
    frame = pd.DataFrame({"event_id": ids, "amount": [float(i) for i in range(len(ids))],
                          "event_timestamp": times, "created": times})
    append_parts(root, frame, SCHEMA)


def _fill(root: Path, days: int, parts_per_day: int, rows: int) -> list[str]:
    ids: list[str] = []
    for d in range(days):
        for p in range(parts_per_day):
            batch = [f"d{d}-p{p}-r{r}" for r in range(rows)]
            _append(root, batch, T0 + timedelta(days=d, minutes=p))
            ids += batch
    return ids


def _ids(root: Path) -> list[str]:
    glob = f"{root}/{parts.PART_GLOB}"
    return [r[0] for r in duckdb.connect().sql(f"SELECT event_id FROM read_parquet('{glob}')")
            .fetchall()]


def test_closed_dates_become_one_part_each_and_keep_every_row_once(tmp_path: Path) -> None:
    root = tmp_path / "view"
    ids = _fill(root, days=3, parts_per_day=4, rows=50)
    result = compact_view(root, before=date(2026, 3, 3))  # the third day is still open
    assert result.dates == ["2026-03-01", "2026-03-02"]
    assert (result.parts_before, result.parts_after) == (12, 6)
    per_date = {d.name: len(list(d.glob("part-*.parquet"))) for d in parts.partitions(root)}
    assert per_date == {"event_date=2026-03-01": 1, "event_date=2026-03-02": 1,
                        "event_date=2026-03-03": 4}
    assert sorted(_ids(root)) == sorted(ids)
    merged = list_parts_in(parts.partition_dir(root, date(2026, 3, 1)))
    times = pq.read_table(merged[0]).column("event_timestamp").to_pylist()
    assert times == sorted(times)
    assert [p.name for p in root.iterdir() if p.name.startswith(".compact-")] == []


def test_a_concurrent_reader_never_sees_duplicates_or_gaps(tmp_path: Path) -> None:
    root = tmp_path / "view"
    expected = sorted(_fill(root, days=12, parts_per_day=5, rows=200))
    glob = f"{root}/{parts.PART_GLOB}"
    seen: list[tuple[int, int]] = []
    errors: list[str] = []
    done = threading.Event()

    def read() -> None:
        con = duckdb.connect()
        while not done.is_set():
            try:
                seen.append(con.sql(f"SELECT count(*), count(DISTINCT event_id) "
                                    f"FROM read_parquet('{glob}')").fetchall()[0])
            except duckdb.IOException as exc:  # a part swapped away between list and open
                errors.append(str(exc).splitlines()[0])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        result = compact_view(root, before=date(2026, 4, 1))
    finally:
        done.set()
        reader.join()
    assert len(result.dates) == 12
    assert seen, "the reader finished no query while compaction ran"
    wrong = [s for s in seen if s != (len(expected), len(expected))]
    assert not wrong, f"{len(wrong)} of {len(seen)} reads saw duplicates or gaps: {wrong[:3]}"
    print(f"{len(seen)} consistent reads, {len(errors)} retried I/O errors")
    assert sorted(_ids(root)) == expected


def test_a_part_written_during_compaction_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "view"
    ids = _fill(root, days=1, parts_per_day=3, rows=10)
    late = ["late-1", "late-2"]
    compact_view(root, before=date(2026, 4, 1),
                 before_swap=lambda: _append(root, late, T0 + timedelta(hours=5)))
    assert sorted(_ids(root)) == sorted(ids + late)
    assert len(parts.list_parts(root)) == 2  # the merged part and the late one


def test_one_compaction_at_a_time(tmp_path: Path) -> None:
    root = tmp_path / "view"
    _fill(root, days=1, parts_per_day=2, rows=1)
    with _compactor(root), pytest.raises(CompactionBusy):
        compact_view(root, before=date(2026, 4, 1))


def _compact_and_die(root: str) -> None:
    compact_view(Path(root), before=date(2026, 4, 1),
                 before_swap=lambda: os.kill(os.getpid(), signal.SIGKILL))


def test_a_compaction_killed_before_its_swap_changes_nothing_and_is_cleaned_up(
    tmp_path: Path,
) -> None:
    root = tmp_path / "view"
    ids = _fill(root, days=1, parts_per_day=3, rows=10)
    before = parts.list_parts(root)
    child = multiprocessing.get_context("spawn").Process(target=_compact_and_die,
                                                         args=(str(root),))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert parts.list_parts(root) == before
    assert len(list(root.glob(".compact-*"))) == 1  # the staged merge, invisible
    assert sorted(_ids(root)) == sorted(ids)
    compact_view(root, before=date(2026, 4, 1))
    assert list(root.glob(".compact-*")) == []
    assert len(parts.list_parts(root)) == 1 and sorted(_ids(root)) == sorted(ids)
