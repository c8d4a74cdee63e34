"""What every chaos worker does first: own log file, settings for the test broker, markers.

A worker life is forked from a process that already imported the services (see
``chaos.spawn``), so it starts in milliseconds; its output goes to its own log file, and
it reports progress by appending lines to a marker file (fsynced), which the test reads
to time its kill.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from streams.consumer import CommitPlan, Inbound
from streams.settings import Settings, load_settings

# The embedded broker honours a short session: a killed member is expelled, and the next
# life joins, in about a second instead of eleven (measured with the 6 s default).
SESSION_TIMEOUT_MS = 1000
HEARTBEAT_MS = 200
PRODUCT_SESSION_TIMEOUT_MS = 6000  # the product's local setting (DESIGN.md, broker notes)
PRODUCT_HEARTBEAT_MS = 1000
COMMIT_WINDOW_MARKER = "commit-window"  # chaos.kills.COMMIT_WINDOW


def start_life(args: dict[str, Any]) -> None:
    """Send stdout/stderr to this life's log file and log at INFO there."""
    log = os.open(args["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")


def settings_for(args: dict[str, Any], models: dict[str, Any] | None = None) -> Settings:
    """Settings for the test's broker, topics, state directory and registry
    (``args["session_timeout_ms"]``: the group session, default :data:`SESSION_TIMEOUT_MS`)."""
    session = int(args.get("session_timeout_ms", SESSION_TIMEOUT_MS))
    heartbeat = HEARTBEAT_MS if session == SESSION_TIMEOUT_MS else PRODUCT_HEARTBEAT_MS
    return load_settings(
        kafka={"bootstrap_servers": args["bootstrap"], "session_timeout_ms": session,
               "heartbeat_interval_ms": heartbeat},
        topics={"prefix": args["prefix"], "partitions": 3},
        state_dir=Path(args["state_dir"]), registry_uri=str(args["registry"]),
        feast={"repo": Path(args.get("feature_repo", "feature_repo"))},
        models=models or {},
    )


class Markers:
    """Appends progress lines to the life's marker file (fsynced: the test reads them)."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a")  # noqa: SIM115 - held for the life of the process
        self._lock = threading.Lock()  # a service's writer thread marks too

    def mark(self, line: str) -> None:
        with self._lock:
            self._file.write(line.rstrip("\n") + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())


def hold_commits(loop: Any, markers: Markers, hold_s: float) -> None:
    """Test hook on one life's consumer loop: before each offset commit (its output is
    flushed by then) write a ``commit-window`` marker and hold the commit ``hold_s``, so a
    kill aimed at that marker lands between the flush and the commit. ``hold_s`` 0: no hook.

    It wraps the loop's commit call of this process only; production code is unchanged.
    """
    if hold_s <= 0:
        return
    commit = loop._commit  # the one call that commits offsets (streams.consumer)

    def held(plan: Any) -> None:
        if plan:
            markers.mark(f"{COMMIT_WINDOW_MARKER} {len(plan)}")
            time.sleep(hold_s)
        commit(plan)

    loop._commit = held


class MarkedService:
    """Mixin before a :class:`~services.runtime.StreamService` subclass: a marker line
    after each handled non-empty batch (before its commit), and :meth:`quiet_for`, the
    final life's "input has gone quiet" test. ``class MarkedX(MarkedService, X)``."""

    def __init__(self, *args: Any, markers: Markers, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.markers = markers
        self.last_input = time.monotonic()
        self.assigned_at: float | None = None

    def on_assign(self, partitions: list[Any]) -> CommitPlan | None:
        self.assigned_at = time.monotonic()
        return super().on_assign(partitions)  # type: ignore[misc]

    def handle_batch(self, batch: list[Inbound[Any]]) -> CommitPlan | None:
        plan = super().handle_batch(batch)  # type: ignore[misc]
        if batch:
            self.last_input = time.monotonic()
            line = self.batch_marker(batch)
            if line:
                self.markers.mark(line)
        return plan

    def batch_marker(self, batch: list[Inbound[Any]]) -> str | None:
        """The marker line for a handled batch (``None``: none)."""
        return f"batch {len(batch)}"

    def quiet_for(self, seconds: float) -> bool:
        """Assigned, and no input for ``seconds`` since the assignment or the last batch."""
        if self.assigned_at is None:
            return False
        return time.monotonic() - max(self.last_input, self.assigned_at) > seconds
