"""Crash-safe local file writes: readers see the old content or all of the new.

Every state file the services keep (checkpoints, registry objects, offline parquet
files, learner snapshots, shadow books, drift profiles, reports) is written the same
way: into a temporary file beside the target, ``fsync``, ``os.replace`` over the
target (the rename is the commit), then ``fsync`` of the directory so the rename
itself survives a power cut. A ``kill -9`` at any point leaves either the old file
or the new one, plus at worst a stray ``.tmp-`` file that nothing reads.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp-"


def fsync_dir(directory: str | Path) -> None:
    """Make renames and creations in ``directory`` durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    """Flush a closed file's bytes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it, commit it.

    For writers that want a path rather than a handle (parquet, ``torch.save``). On an
    exception the temporary file is removed and ``path`` is left as it was. The file
    gets ``mode`` (``mkstemp`` alone would leave it readable by its owner only).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_atomic(path: str | Path, data: bytes | str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with replacing(path, mode) as tmp:
        tmp.write_bytes(payload)
