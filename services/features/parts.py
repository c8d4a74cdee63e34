"""The offline store's on-disk layout: append-only parquet parts, one directory per date.

A view's offline data is a directory of immutable parquet files, partitioned the hive
way so DuckDB, Spark and pyarrow read it alike::

    <root>/event_date=2026-05-01/part-<32 hex>.parquet

Each write adds new parts and never touches existing ones, so its cost grows with the
rows written, not with the history. A part becomes visible in one step: it is written
under a temporary name in its date directory (``.tmp-part-….parquet.<random>``, a name
no reader's glob matches: it starts with a dot and does not end in ``.parquet``),
flushed with ``fsync`` and renamed to its final name. A ``kill -9`` leaves complete
parts and at worst an invisible temporary file.

Writers take a shared lock on ``<root>/.lock`` while they write and rename; compaction
(:mod:`services.features.compact`) takes it exclusively for the instant it swaps a date
directory, so a write never lands in a directory that is being replaced.

The Feast source of a view names ``<root>/event_date=*/part-*.parquet`` (``PART_GLOB``);
an empty view holds one zero-row part so that every engine can read its schema (removed
by the first write of real rows).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from services.files import TMP_PREFIX, fsync_dir, fsync_file

if TYPE_CHECKING:
    import pyarrow as pa

PARTITION = "event_date"
"""The hive partition key: the UTC date of a row's event timestamp."""
PART_GLOB = f"{PARTITION}=*/part-*.parquet"
"""What a view's source path appends to its root; matches finished parts only."""
EMPTY_DATE = date(1970, 1, 1)
"""Partition of the zero-row part that gives an empty view its schema."""
LOCK_NAME = ".lock"


def parts_root(uri: str) -> str:
    """The directory of a source path ``<root>/event_date=*/part-*.parquet``.

    Raises ``ValueError`` for a path that is not a parts glob (a single parquet file).
    """
    suffix = f"/{PART_GLOB}"
    if not uri.endswith(suffix):
        raise ValueError(f"source path {uri!r} is not a parts directory (…{suffix})")
    return uri[: -len(suffix)]


def partition_dir(root: Path, day: date) -> Path:
    """The directory of one date's parts."""
    return root / f"{PARTITION}={day.isoformat()}"


def partition_date(directory: Path) -> date:
    """The date of a partition directory (inverse of :func:`partition_dir`)."""
    key, _, value = directory.name.partition("=")
    if key != PARTITION:
        raise ValueError(f"{directory} is not a {PARTITION} partition")
    return date.fromisoformat(value)


def list_parts(root: Path) -> list[Path]:
    """Every finished part under ``root`` (what a reader's glob matches), sorted."""
    return sorted(root.glob(PART_GLOB))


def partitions(root: Path) -> list[Path]:
    """The date directories under ``root``, oldest first."""
    return sorted(p for p in root.glob(f"{PARTITION}=*") if p.is_dir())


@contextmanager
def view_lock(root: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold ``<root>/.lock``: shared for writers of parts, exclusive for a directory swap."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def new_part_name() -> str:
    """A fresh, never reused part file name."""
    return f"part-{uuid.uuid4().hex}.parquet"


def write_part_file(directory: Path, table: pa.Table) -> Path:
    """Write ``table`` as one new part in ``directory``: temp name, fsync, rename.

    The caller holds the view lock (shared) and fsyncs ``directory`` afterwards.
    """
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    final = directory / new_part_name()
    fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{final.name}.", dir=directory)
    os.close(fd)
    tmp = Path(name)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o644)
        fsync_file(tmp)
        os.rename(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def event_dates(table: pa.Table, column: str) -> list[tuple[date, pa.Table]]:
    """``table`` split by the UTC date of ``column`` (a timestamp), dates ascending."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return []
    stamps = table[column]
    if stamps.null_count:
        raise ValueError(f"{column} has null timestamps")
    utc = pc.cast(stamps, pa.timestamp("us", tz="UTC"))
    days = pc.cast(pc.cast(utc, pa.timestamp("us")), pa.date32())  # UTC wall date
    unique = sorted(pc.unique(days).to_pylist())
    if len(unique) == 1:
        return [(unique[0], table)]
    return [(day, table.filter(pc.equal(days, pa.scalar(day, pa.date32())))) for day in unique]


def write_parts(root: Path, table: pa.Table, column: str) -> list[Path]:
    """Append ``table`` to the view at ``root``: one new part per event date of ``column``.

    Each part is visible whole or not at all; parts of one call become visible one
    after another (a reader between two renames sees the first date's rows only).
    Returns the new parts.
    """
    written: list[Path] = []
    groups = event_dates(table, column)
    if not groups:
        return written
    with view_lock(root, exclusive=False):
        for day, rows in groups:
            written.append(write_part_file(partition_dir(root, day), rows))
        for directory in {p.parent for p in written}:
            fsync_dir(directory)
        _drop_empty_seed(root)
    fsync_dir(root)
    return written


def _drop_empty_seed(root: Path) -> None:
    """Remove the zero-row schema part once real parts exist (dask trips over it)."""
    seed = partition_dir(root, EMPTY_DATE)
    if seed.is_dir():
        shutil.rmtree(seed, ignore_errors=True)


def ensure_parts(root: Path, schema: pa.Schema) -> None:
    """Give a view without parts one zero-row part, so engines can read its schema."""
    if list_parts(root):
        return
    with view_lock(root, exclusive=False):
        if not list_parts(root):
            directory = partition_dir(root, EMPTY_DATE)
            write_part_file(directory, schema.empty_table())
            fsync_dir(directory)
    fsync_dir(root)
