"""One writer of the alias race in test_registry_s3: a separate process, its own client."""

from __future__ import annotations

import time
from typing import Any

from services.registry.store import AliasConflictError, ModelRegistry


def race(root: str, options: dict[str, Any], version: int, starts: list[float],
         queue: Any) -> None:
    """At each start time: read ``champion`` and try to move it to ``version`` (CAS)."""
    registry = ModelRegistry(root, storage_options=options, lock_wait_s=30)
    for round_no, start in enumerate(starts):
        time.sleep(max(0.0, start - time.time()))
        current = registry.get_alias("m", "champion")
        try:
            registry.set_alias("m", "champion", version, expected=current)
            queue.put((round_no, version, "won", current))
        except AliasConflictError as exc:
            queue.put((round_no, version, "lost", exc.actual))
