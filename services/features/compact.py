"""Compaction: merge a closed date's small parts into one, without stopping the ingest.

Readers list ``<root>/event_date=*/part-*.parquet``; at no instant may that listing
hold both a merged part and the parts it merged (duplicates) or neither (a gap). So a
date directory is replaced as a whole, by one atomic step:

1. the date's parts are read, merged (sorted by event time) and written as one part
   into a staging directory ``<root>/.compact-<hex>`` (no reader's glob matches it);
2. under the view's exclusive lock (writers of new parts wait, for milliseconds),
   parts that arrived in the date meanwhile (late events) are hard-linked into the
   staging directory, and the staging and date directories are exchanged with
   ``renameat2(RENAME_EXCHANGE)``: the listing flips from the old parts to the merged
   one at once;
3. the old directory, now at the staging path, is removed.

A ``kill -9`` at any point leaves the old or the new directory in place and at worst a
``.compact-*`` directory, removed by the next run. A query that listed a date's parts
just before its swap and opens one just after finds it gone and fails with an I/O
error (never a wrong answer); run it again. Only one compaction runs per view at a
time (``<root>/.compact.lock``). Needs a local filesystem that can exchange two
directories atomically (Linux: ext4, xfs, btrfs, tmpfs); object stores cannot, and
their parts are left as they are.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from services.features.parts import (
    PARTITION,
    list_parts,
    partition_date,
    partitions,
    view_lock,
    write_part_file,
)
from services.files import fsync_dir

STAGING_PREFIX = ".compact-"
COMPACT_LOCK = ".compact.lock"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class CompactionBusy(RuntimeError):
    """Another compaction of the same view is running."""


@dataclass(slots=True)
class Compaction:
    """What one run did to one view."""

    view: str
    dates: list[str] = field(default_factory=list)
    parts_before: int = 0
    parts_after: int = 0
    rows: int = 0


def exchange_dirs(a: Path, b: Path) -> None:
    """Swap two directories atomically (``renameat2`` with ``RENAME_EXCHANGE``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    func = getattr(libc, "renameat2", None)
    if func is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available: cannot swap directories")
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                     ctypes.c_uint]
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"cannot exchange {a} and {b}: {os.strerror(code)}")


@contextmanager
def _compactor(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / COMPACT_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CompactionBusy(f"{root.name}: another compaction is running") from None
        yield
    finally:
        os.close(fd)


def _merge(parts: list[Path], sort_by: tuple[str, ...]) -> object:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p, partitioning=None) for p in parts]
    schema = tables[0].schema
    table = pa.concat_tables([t.cast(schema) for t in tables])
    keys = [(name, "ascending") for name in sort_by if name in schema.names]
    return table.sort_by(keys) if keys else table


def compact_date(
    root: Path,
    directory: Path,
    *,
    sort_by: tuple[str, ...] = ("event_timestamp", "created"),
    before_swap: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Merge the parts of one date directory into one; returns (parts merged, rows).

    The caller holds the compaction lock. ``before_swap`` runs just before the view
    lock is taken (tests use it to land a late part in the middle of a compaction).
    """
    parts = list_parts_in(directory)
    if len(parts) < 2:
        return 0, 0
    table = _merge(parts, sort_by)
    staging = root / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    staging.mkdir()
    write_part_file(staging, table)  # type: ignore[arg-type]
    if before_swap is not None:
        before_swap()
    with view_lock(root, exclusive=True):
        merged = {p.name for p in parts}
        for late in list_parts_in(directory):
            if late.name not in merged:
                os.link(late, staging / late.name)
        fsync_dir(staging)
        exchange_dirs(staging, directory)
        fsync_dir(root)
    shutil.rmtree(staging)  # the old parts, now out of every reader's listing
    return len(parts), table.num_rows  # type: ignore[attr-defined]


def list_parts_in(directory: Path) -> list[Path]:
    """The finished parts of one date directory."""
    return sorted(directory.glob("part-*.parquet"))


def compact_view(
    root: Path,
    *,
    before: date,
    min_parts: int = 2,
    before_swap: Callable[[], None] | None = None,
) -> Compaction:
    """Compact every date of the view at ``root`` older than ``before`` with ``min_parts``+.

    Dates from ``before`` on are still being written and are left alone. Leftovers of
    a killed run (``.compact-*``) are removed first.
    """
    result = Compaction(view=root.name, parts_before=len(list_parts(root)))
    with _compactor(root):
        for stale in root.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        for directory in partitions(root):
            if partition_date(directory) >= before:
                continue
            if len(list_parts_in(directory)) < max(min_parts, 2):
                continue
            merged, rows = compact_date(root, directory, before_swap=before_swap)
            if merged:
                result.dates.append(directory.name.removeprefix(f"{PARTITION}="))
                result.rows += rows
    result.parts_after = len(list_parts(root))
    return result
