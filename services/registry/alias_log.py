"""Aliases on object storage (S3 and other fsspec stores without an atomic rename).

An object store has no rename and no lock file that survives its holder reliably, but
it can create an object only if it is absent (S3's conditional ``PUT`` with
``If-None-Match: *``, which fsspec exposes as mode ``"xb"``). So an alias is a log of
write-once entries::

    aliases/<alias>/000000000001.json   {"alias", "version", "previous", "history", ...}
    aliases/<alias>/000000000002.json   ...

The alias's value is its newest entry (``"version": null`` is a deletion). A change
is a compare-and-set: read the newest entry ``n``, check it holds the expected value,
then create entry ``n + 1`` exclusively. Two writers racing for ``n + 1`` cannot both
create it: the loser re-reads and either finds a value it did not expect
(:class:`AliasConflictError`) or tries again. Readers see the old or the new value,
never a partial one (one object ``PUT`` is atomic).

Entries are never deleted: a writer holding a stale ``n`` could otherwise recreate a
pruned entry below the head and believe it had won. The log grows by one small object
per alias change (promotions, rollbacks, candidates: a handful a day).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_WIDTH = 12


def _entry_name(seq: int) -> str:
    return f"{seq:0{_WIDTH}d}.json"


def _seq_of(name: str) -> int | None:
    stem = name[: -len(".json")] if name.endswith(".json") else ""
    return int(stem) if len(stem) == _WIDTH and stem.isdigit() else None


class AliasLog:
    """Compare-and-set aliases as append-only logs of exclusively created objects."""

    def __init__(
        self,
        fs: Any,
        create_exclusive: Callable[[str, bytes], bool],
        *,
        wait_s: float = 10.0,
    ) -> None:
        self.fs = fs
        self._create_exclusive = create_exclusive
        self.wait_s = wait_s

    def _entries(self, alias_dir: str) -> list[int]:
        try:
            listed = self.fs.ls(alias_dir, detail=False)
        except FileNotFoundError:
            return []
        seqs = (_seq_of(str(p).rstrip("/").rsplit("/", 1)[-1]) for p in listed)
        return sorted(s for s in seqs if s is not None)

    def head(self, alias_dir: str) -> tuple[int, dict[str, Any] | None]:
        """The newest entry's number and record (0 and None for an empty log)."""
        for _ in range(5):
            seqs = self._entries(alias_dir)
            if not seqs:
                return 0, None
            try:
                raw = self.fs.cat_file(f"{alias_dir}/{_entry_name(seqs[-1])}")
                return seqs[-1], json.loads(raw)
            except FileNotFoundError:
                continue  # listed but gone (the log was removed meanwhile): list again
        return 0, None

    def record(self, alias_dir: str) -> dict[str, Any] | None:
        """The alias's current record, or None when it is unset or deleted."""
        _, record = self.head(alias_dir)
        if record is None or record.get("version") is None:
            return None
        return record

    def names(self, aliases_dir: str) -> list[str]:
        """Aliases with a log under ``aliases_dir`` (deleted ones included)."""
        try:
            listed = self.fs.ls(aliases_dir, detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(p).rstrip("/").rsplit("/", 1)[-1] for p in listed)

    def compare_and_set(
        self,
        alias_dir: str,
        alias: str,
        version: int | None,
        expected: int | None,
        on_conflict: Callable[[int | None], Exception],
        history: Callable[[dict[str, Any] | None], list[int]] | None = None,
    ) -> None:
        """Make ``version`` (None: delete) the alias's value if it is ``expected`` now.

        Raises ``on_conflict(actual)`` when the alias holds something else, and
        ``TimeoutError`` when the log kept moving for ``wait_s`` while still holding
        ``expected`` (writers flipping it back and forth). ``history(old_record)`` gives
        the new entry's ``history`` (the versions the alias pointed at before).
        """
        deadline = time.monotonic() + self.wait_s
        delay = 0.002
        while True:
            seq, record = self.head(alias_dir)
            current = None if record is None else record.get("version")
            if current != expected:
                raise on_conflict(current)
            entry = {
                "alias": alias,
                "version": version,
                "previous": current,
                "updated_at": datetime.now(UTC).isoformat(),
                "seq": seq + 1,
            }
            if history is not None:
                entry["history"] = history(record)
            if self._create_exclusive(f"{alias_dir}/{_entry_name(seq + 1)}",
                                      json.dumps(entry).encode()):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"alias {alias} kept changing for {self.wait_s:.0f}s")
            time.sleep(delay)  # another writer took seq + 1: read the new head
            delay = min(delay * 2, 0.05)
