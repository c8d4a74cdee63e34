"""Two drift monitor replicas in one group, each with its own state directory.

Nothing a replica keeps is shared: each has its own windows (over the partitions it
owns) and its own trigger state under its own ``state_dir``; what the replicas must
agree on (a request in flight, the cooldown, the reference) travels through Kafka.
A drift episode seen by both must yield exactly one retrain request, and a replica
restarted on its own state directory must not ask again.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_drift_service import (
    WINDOW,
    _events,
    _frame,
    _produce,
    _read,
    _reference,
    _settings,
)

from services.drift.references import StaticReferences
from services.drift.service import DriftMonitor
from streams.contracts import DriftReport, RetrainRequest
from streams.settings import Settings

pytestmark = pytest.mark.integration


def _replica(settings: Settings, state_dir: Path) -> Settings:
    return settings.model_copy(update={"state_dir": state_dir})


def test_two_replicas_on_separate_state_dirs_ask_once_per_episode(
    settings: Settings, tmp_path: Path
) -> None:
    base = _settings(settings, window_events=WINDOW // 2)
    replicas = [_replica(base, tmp_path / name) for name in ("a", "b")]
    references = StaticReferences({"m1": _reference("snap-a")})
    monitors = [DriftMonitor(s, references=references) for s in replicas]
    threads = [threading.Thread(target=m.run, kwargs={
        "until": lambda: sum(x.stats.windows for x in monitors) >= 12, "idle_timeout_s": 60})
        for m in monitors]
    for t in threads:
        t.start()
    for _ in range(300):  # both members own partitions before any event arrives
        if all(m.loop.assignment for m in monitors):
            break
        time.sleep(0.1)
    assert all(m.loop.assignment for m in monitors)
    # 2 windows' worth of clean events, then drift on every partition at once: both
    # replicas see alarming windows at about the same time.
    _produce(base, [*_events(_frame(WINDOW, 11), 0),
                    *_events(_frame(6 * WINDOW, 12, shift=0.8), WINDOW)])
    for t in threads:
        t.join(120)

    reports = _read(base, "drift.reports", DriftReport, 12)
    assert sum(r.drifted for r in reports) >= 4
    assert all(m.stats.drifted_windows >= 2 for m in monitors)  # both would have asked
    requests = _read(base, "retrain.requests", RetrainRequest, 1)
    assert len({r.request_id for r in requests}) == 1, [
        (r.request_id, r.window_end) for r in requests]
    # Each replica wrote its trigger state in its own directory only.
    for s in replicas:
        assert (Path(s.state_dir) / "drift" / "m1.trigger.json").is_file()

    # A replica restarted on its own state directory re-reads its uncommitted windows
    # and the request from Kafka: no second request.
    restarted = DriftMonitor(replicas[0], references=references)
    restarted.run(idle_timeout_s=8)
    assert restarted.stats.requests == 0
    again = _read(base, "retrain.requests", RetrainRequest, 1)
    assert len({r.request_id for r in again}) == 1
