"""Offline parquet append: atomic, cast to the file's schema, old rows kept."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import services.features.sink as sink

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SCHEMA = pa.schema([("event_id", pa.string()), ("amount", pa.float64()),
                    ("event_timestamp", pa.timestamp("us", tz="UTC"))])


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "view.parquet"
    pq.write_table(pa.table({"event_id": ["a"], "amount": [1.0],
                             "event_timestamp": [T0]}, schema=SCHEMA), path)
    return path


def test_append_keeps_old_rows_and_the_schema(tmp_path: Path) -> None:
    path = _file(tmp_path)
    frame = pd.DataFrame({"amount": [2, 3], "event_id": ["b", "c"],  # other order, ints
                          "event_timestamp": pd.DatetimeIndex([T0, T0]).as_unit("ns")})
    assert sink.append_parquet(path, frame) == 3
    table = pq.read_table(path)
    assert table.schema.equals(SCHEMA)
    assert table.column("event_id").to_pylist() == ["a", "b", "c"]
    assert table.column("amount").to_pylist() == [1.0, 2.0, 3.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.parquet"]


def test_a_failed_append_leaves_the_file_whole(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = _file(tmp_path)
    before = path.read_bytes()

    def torn_write(table: pa.Table, where: Path) -> None:
        Path(where).write_bytes(b"PAR1 half a file")  # the write dies half-way
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", torn_write)
    frame = pd.DataFrame({"event_id": ["b"], "amount": [2.0], "event_timestamp": [T0]})
    with pytest.raises(OSError, match="disk full"):
        sink.append_parquet(path, frame)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.parquet"]


def test_rows_missing_a_column_are_refused(tmp_path: Path) -> None:
    path = _file(tmp_path)
    with pytest.raises(ValueError, match="amount"):
        sink.append_parquet(path, pd.DataFrame({"event_id": ["b"], "event_timestamp": [T0]}))
