"""Broker ``kill -9`` under running services: they reconnect by themselves, and every
acknowledged event is handled.

The embedded broker keeps its log on the loopback S3 server (``durable_broker``). The
real drift monitor and the real online service run in this process (one thread each, the
product's loops and settings, ``kafka.idempotence: false`` as for this broker, see
``test_broker_restart.py``), while a producer sends labelled Agrawal events at a steady
rate. Twice, at seeded points, the broker is SIGKILLed, left down for a seeded moment and
started again on the same port over the same bucket; nothing is restarted but the broker.

Afterwards, counted from what the services produced: every acknowledged feature event
lies in the offsets of a ``drift.reports`` window, every acknowledged labelled event was
learned by the online learner, each service handled events after each restart, neither
loop died, and nothing was dead-lettered (the input is valid).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from chaos.ledger import FaultRecorder
from chaos.test_service_kills import _agrawal_events
from chaos.topics import read_all
from chaos.workers import online as online_worker
from streams.broker import EmbeddedBroker
from streams.contracts import DriftReport, FeatureEvent
from streams.producer import DeliveryError, EventProducer
from streams.settings import Settings, load_settings

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.slow]

SEED = 20261124
PAIRS = 2_400
RATE = 160.0  # labelled events per second: about 15 s of stream
KILLS = 2
OUTAGE_S = (0.5, 2.0)
SETTLE_S = 60.0  # how long the services may take to catch up after the stream


def _drift_reference() -> Any:
    import pandas as pd

    from services.drift.profile import build_reference_profile
    from services.drift.references import ModelReference
    from services.featurespec import FeatureSpec, ModelSpec

    spec = ModelSpec(model=online_worker.MODEL, entity="id", features=tuple(
        FeatureSpec(n, "categorical" if n in online_worker.CATEGORICAL else "numeric")
        for n in online_worker.NAMES))
    rows = [f.features for f, _ in _agrawal_events(3000)]
    profile = build_reference_profile(pd.DataFrame(rows), spec, "snap-restart")
    return ModelReference(spec=spec, profile=profile, champion_version=1)


class Running:
    """A service's loop in a thread; its exception, if any, is kept for the test."""

    def __init__(self, service: Any, name: str) -> None:
        self.service, self.error = service, None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.service.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.service.loop.stop()
        self.thread.join(30)


@pytest.mark.soak  # make soak; make test keeps test_broker_restart (streams over a restart)
@pytest.mark.timeout(300)
def test_services_reconnect_after_broker_kill9(
    durable_broker: EmbeddedBroker, durable_settings: Settings, ledger: FaultRecorder,
) -> None:
    from services.drift.references import StaticReferences
    from services.drift.service import DriftMonitor
    from services.observability.setup import in_memory_telemetry
    from services.online.service import build
    from streams.admin import create_topics

    started = time.monotonic()
    settings = load_settings(**{
        **durable_settings.model_dump(),
        "kafka": {**durable_settings.kafka.model_dump(), "idempotence": False},
        "models": {online_worker.MODEL: {
            "online": {"spec": online_worker.SPEC},
            "drift": {"window_events": 300, "window_seconds": 3600, "ks_method": "asymp",
                      "idle_flush_seconds": 1.0}}}})
    create_topics(settings)
    learned: set[str] = set()
    lock = threading.Lock()

    def record(model: str, joined: Sequence[Any], outcomes: Sequence[Any]) -> None:
        with lock:
            learned.update(j.event_id for j in joined)

    online = build(settings, snapshot_every=300, snapshot_interval_s=1.0, batch_size=200,
                   telemetry=in_memory_telemetry("restart-online"), on_learned=record)
    drift = DriftMonitor(settings, telemetry=in_memory_telemetry("restart-drift"),
                         references=StaticReferences({online_worker.MODEL: _drift_reference()}),
                         batch_size=500)
    running = [Running(drift, "drift"), Running(online, "online")]

    pairs = _agrawal_events(PAIRS)
    rng = random.Random(SEED)
    points = sorted(rng.sample(range(PAIRS // 5, 4 * PAIRS // 5, 300), KILLS))
    progress: list[tuple[int, int]] = []  # (reported, learned) when each restart happened
    producer = EventProducer(settings, "restart-source")
    t0 = time.monotonic()
    outages = []
    for i, (feature, label) in enumerate(pairs):
        time.sleep(max(0.0, t0 + i / RATE - time.monotonic()))
        if i in points:
            outage = rng.uniform(*OUTAGE_S)
            durable_broker.stop(kill=True)
            time.sleep(outage)
            durable_broker.start()
            outages.append(outage)
            with lock:
                progress.append((drift.stats.events_reported, len(learned)))
        producer.send(settings.topic("features"), feature, key=feature.event_id, span=False)
        producer.send(settings.topic("labels"), label, key=label.event_id, span=False)
    failed: set[str] = set()
    try:
        producer.flush(timeout=30)
    except DeliveryError as error:
        failed = {(f.key or b"").decode() for f in error.failures}
    acked = {f.event_id for f, _ in pairs} - failed

    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline and any(r.thread.is_alive() for r in running):
        with lock:
            done = acked <= learned
        if done and drift.stats.events_reported >= len(acked):
            break
        time.sleep(0.5)
    time.sleep(2.0)  # an idle flush closes the last window
    for r in running:
        r.stop()

    source = read_all(settings, "features", FeatureEvent)
    reports = [r.event for r in read_all(settings, "drift.reports", DriftReport)]
    dead = read_all(settings, "deadletter")
    covered: dict[int, list[tuple[int, int]]] = {}
    for report in reports:
        for window in report.window.offsets:
            covered.setdefault(window.partition, []).append((window.first_offset,
                                                             window.last_offset))
    reported_ids = {r.event.event_id for r in source if r.event is not None and any(
        a <= r.offset <= b for a, b in covered.get(r.partition, []))}
    unreported = acked - reported_ids
    unlearned = acked - learned
    final = (drift.stats.events_reported, len(learned))
    resumed = [n for n, (reported, n_learned) in enumerate(progress)
               if final[0] > reported and final[1] > n_learned]
    errors = [f"{r.thread.name}: {r.error!r}" for r in running if r.error is not None]
    elapsed = time.monotonic() - started
    detail = (f"seed {SEED}; {KILLS} kills at events {points}, down "
              f"{', '.join(f'{o:.1f}' for o in outages)} s; {len(pairs)} labelled events "
              f"sent, {len(acked)} acknowledged; drift monitor reported {final[0]} events in "
              f"{len(reports)} windows ({len(unreported)} acknowledged events in none), online "
              f"learner learned {len(learned)} ({len(unlearned)} acknowledged never); "
              f"{len(dead)} dead letters; loops died: {errors or 'none'}; {elapsed:.0f} s")
    print(detail)
    ledger.fault("broker kill -9 under running drift and online services, S3 storage",
                 injected=len(outages), survived=len(resumed) if not errors else 0,
                 lost=len(unreported | unlearned), detail=detail)
    assert not errors, errors
    assert len(outages) == KILLS
    assert len(source) >= len(acked)
    assert not unreported, f"acknowledged events in no drift report: {sorted(unreported)[:5]}"
    assert not unlearned, f"acknowledged events never learned: {sorted(unlearned)[:5]}"
    assert resumed == list(range(KILLS)), f"no progress after restarts {progress} -> {final}"
    assert not dead, [r.headers.get("dlq.reason") for r in dead[:5]]
