"""Offline parts: appends add immutable parts per UTC date; torn writes stay invisible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import services.features.parts as parts
from services.features.sink import append_parts

T0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
SCHEMA = pa.schema([("event_id", pa.string()), ("amount", pa.float64()),
                    ("event_timestamp", pa.timestamp("us", tz="UTC"))])


def _frame(ids: list[str], times: list[datetime]) -> pd.DataFrame:
    return pd.DataFrame({"amount": list(range(len(ids))), "event_id": ids,  # ints, other order
                         "event_timestamp": pd.to_datetime(times, utc=True).as_unit("ns")})


def _glob(root: Path) -> str:
    return f"{root}/{parts.PART_GLOB}"


def test_each_append_adds_parts_per_utc_date_and_leaves_old_parts_untouched(
    tmp_path: Path,
) -> None:
    root = tmp_path / "view"
    first = append_parts(root, _frame(["a"], [T0]), SCHEMA)
    before = {p: p.read_bytes() for p in first}
    # 23:30 at UTC-5 is 04:30 UTC the next day: partitions follow the UTC date
    late = datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    second = append_parts(root, _frame(["b", "c"], [T0 + timedelta(hours=1), late]), SCHEMA)
    assert {p.parent.name for p in second} == {"event_date=2026-03-01", "event_date=2026-03-02"}
    assert {p: p.read_bytes() for p in first} == before
    assert parts.list_parts(root) == sorted([*first, *second])
    for part in parts.list_parts(root):
        assert pq.read_schema(part).equals(SCHEMA)
    by_date = {p.parent.name: pq.read_table(p).column("event_id").to_pylist()
               for p in second}
    assert by_date == {"event_date=2026-03-01": ["b"], "event_date=2026-03-02": ["c"]}


def test_a_failed_write_leaves_no_part_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "view"
    append_parts(root, _frame(["a"], [T0]), SCHEMA)
    before = parts.list_parts(root)

    def torn_write(table: pa.Table, where: Path) -> None:
        Path(where).write_bytes(b"PAR1 half a file")  # the write dies half-way
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", torn_write)
    with pytest.raises(OSError, match="disk full"):
        append_parts(root, _frame(["b"], [T0]), SCHEMA)
    assert parts.list_parts(root) == before
    assert [p.name for p in before[0].parent.iterdir()] == [before[0].name]


def test_a_torn_temporary_file_is_invisible_to_every_engine(tmp_path: Path) -> None:
    """What a kill -9 mid-write leaves behind: no reader may pick it up."""
    root = tmp_path / "view"
    (good,) = append_parts(root, _frame(["a", "b"], [T0, T0]), SCHEMA)
    torn = good.parent / f"{parts.TMP_PREFIX}{parts.new_part_name()}.x1y2z3"
    torn.write_bytes(good.read_bytes()[:100])
    assert parts.list_parts(root) == [good]
    rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{_glob(root)}')").fetchall()
    assert rows == [(2,)]
    assert ds.dataset(root, format="parquet", partitioning="hive").count_rows() == 2


def test_rows_missing_a_column_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="amount"):
        append_parts(tmp_path, pd.DataFrame({"event_id": ["b"], "event_timestamp": [T0]}),
                     SCHEMA)


def test_an_empty_view_gets_one_zero_row_part_with_its_schema(tmp_path: Path) -> None:
    root = tmp_path / "view"
    parts.ensure_parts(root, SCHEMA)
    parts.ensure_parts(root, SCHEMA)
    (seed,) = parts.list_parts(root)
    assert pq.read_table(seed).num_rows == 0
    assert pq.read_schema(seed).equals(SCHEMA)
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{_glob(root)}')").fetchall() == [(0,)]


def test_source_paths_name_their_parts_root() -> None:
    assert parts.parts_root(f"/d/offline/v/{parts.PART_GLOB}") == "/d/offline/v"
    with pytest.raises(ValueError, match="not a parts directory"):
        parts.parts_root("/d/v.parquet")
