"""kill -9 of the online service mid-stream: after a restart every produced event is learned,
into the state exactly once; what the killed process learned after its last snapshot is
learned again (the at-least-once window) and counted.

The service runs in a subprocess (tests/integration/workers/online_worker.py, built by the
``driftloop run online`` factory) and appends the ids it learns to a file per process.
Events are produced while it runs; the test SIGKILLs it once it has learned a third of
them, and starts a second process, which resumes from the newest snapshot and its offsets.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from river.datasets import synth

from streams.contracts import FeatureEvent, LabelEvent
from streams.producer import EventProducer
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

WORKER = Path(__file__).parent / "workers" / "online_worker.py"
CATEGORICAL = ("elevel", "car", "zipcode")
T0 = datetime(2026, 4, 1, tzinfo=UTC)
N = 4000
SNAPSHOT_EVERY, BATCH = 400, 300  # as in the worker
RATE = 500.0  # events per second, so that the kill lands mid-stream


def _produce(settings: Settings, done: threading.Event) -> None:
    started = time.monotonic()
    with EventProducer(settings, "test") as producer:
        for i, (x, y) in enumerate(itertools.islice(synth.Agrawal(seed=3), N)):
            at = T0 + timedelta(seconds=i)
            feats = {k: (str(v) if k in CATEGORICAL else float(v)) for k, v in x.items()}
            key = f"c{i % 50}"
            producer.send(settings.topic("features"), FeatureEvent(
                event_id=f"ev{i}", model="agrawal", entity_id=key, event_time=at,
                features=feats), key, span=False)
            producer.send(settings.topic("labels"), LabelEvent(
                event_id=f"ev{i}", model="agrawal", label=float(y), event_time=at), key,
                span=False)
            if i % 100 == 99:
                producer.flush()
                time.sleep(max(0.0, started + (i + 1) / RATE - time.monotonic()))
    done.set()


def _start(settings: Settings, state: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), settings.kafka.bootstrap_servers, settings.topics.prefix,
         str(state), str(out), str(N)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_online_service_killed_mid_stream_resumes_without_losing_events(
    settings: Settings, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first_out, second_out = tmp_path / "learned-1.txt", tmp_path / "learned-2.txt"
    first = _start(settings, state, first_out)
    assert json.loads(first.stdout.readline())["restored_learned"] == 0
    produced = threading.Event()
    producer = threading.Thread(target=_produce, args=(settings, produced), daemon=True)
    producer.start()
    deadline = time.monotonic() + 90
    while len(_lines(first_out)) < N // 3 and time.monotonic() < deadline:
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    killed_at = len(_lines(first_out))
    assert N // 3 <= killed_at < N, "the kill did not land mid-stream"
    assert not produced.is_set(), "production had already finished at the kill"

    second = _start(settings, state, second_out)
    restored = json.loads(second.stdout.readline())["restored_learned"]
    output, errors = second.communicate(timeout=120)
    producer.join(30)
    assert second.returncode == 0, errors[-3000:]
    counts = json.loads(output.strip().splitlines()[-1])

    learned_1, learned_2 = _lines(first_out), _lines(second_out)
    expected = {f"ev{i}" for i in range(N)}
    assert len(set(learned_1)) == len(learned_1) and len(set(learned_2)) == len(learned_2)
    assert set(learned_1) | set(learned_2) == expected  # nothing skipped
    assert counts["learned"] == N  # the state learned each event exactly once
    assert 0 < restored <= len(learned_1)  # resumed from a snapshot, not from scratch
    assert len(learned_2) == N - restored
    duplicates = set(learned_1) & set(learned_2)
    # learned by the killed process after its last snapshot, lost with it, learned again
    assert len(duplicates) == len(learned_1) - restored
    assert len(duplicates) < SNAPSHOT_EVERY + BATCH
    print(f"\nrestart: produced {N}, killed after {len(learned_1)} learned, resumed from a "
          f"snapshot of {restored}, learned again {len(duplicates)}, redelivered messages "
          f"skipped {counts['redelivered']}, join duplicates {counts['join_duplicates']}")
