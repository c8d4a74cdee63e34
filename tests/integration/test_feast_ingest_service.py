"""End to end over the real broker: generated events -> Kafka -> ingest service -> Feast.

Parametrized over both store variants like the other Feast tests (the real one needs
Postgres and Redis, skipped with a reason when they are unreachable).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from chaos.topics import committed, read_all

from services.features.feast_repo import (
    apply_repo,
    copy_repo,
    drop_project,
    load_layout,
    open_repo,
)
from services.features.generate import Generator, GeneratorConfig
from services.features.ingest_service import IngestService
from services.features.replay import replay
from services.features.snapshot import build_training_frame
from streams.contracts import FeatureEvent
from streams.producer import EventProducer
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::RuntimeWarning")]
T0 = datetime(2026, 4, 1, tzinfo=UTC)
N = 300


@pytest.fixture(params=["embedded", pytest.param("real", marks=pytest.mark.services)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    real: dict[str, str] = {}
    if request.param == "real":
        dsn = request.getfixturevalue("postgres_dsn")
        redis = request.getfixturevalue("redis_url")
        real = {"registry_url": f"{dsn}?sslmode=disable", "redis": redis}
    s = open_repo(
        request.param, repo_path=copy_repo(tmp_path / "repo"), project=f"t_{uuid.uuid4().hex[:12]}",
        **real,
    )
    apply_repo(s)
    yield s
    drop_project(s)


def test_replayed_events_land_in_feast_and_rejects_in_the_dead_letter_topic(
    store: Any, settings: Settings
) -> None:
    gen = Generator(GeneratorConfig(seed=51, label_delay_s=2.0))
    pairs = list(gen.live(T0, N))
    bad = FeatureEvent(
        event_id="bad-1",
        model="fraud",
        entity_id="c",
        event_time=T0,
        features={**pairs[0][0].features, "surprise": 1.0},
    )
    with EventProducer(settings, "test") as producer:
        producer.send(settings.topic("features"), bad, "c", span=False)
        stats = replay(producer, settings, pairs)
    assert stats.features == N and stats.labels == N

    service = IngestService(settings, store=store, flush_rows=100_000, flush_interval_s=0.5)
    service.run(
        until=lambda: service.sink.rows >= 3 * N and service.loop.stats.dead_lettered,
        idle_timeout_s=60,
    )
    assert service.loop.stats.dead_lettered == 1
    assert service.sink.rows == 3 * N  # transaction, card and label rows
    assert service.buffer.pending_labels == 0
    assert service.loop.stats.commits > 0

    layout = load_layout(store, "fraud")
    frame, labelled = build_training_frame(store, layout, T0, T0 + timedelta(hours=1))
    assert labelled == N and len(frame) == N
    expected = pd.DataFrame(
        [{"event_id": f.event_id, **f.features, "is_fraud": lbl.label} for f, lbl in pairs]
    ).set_index("event_id")
    got = frame.set_index("event_id")
    for name in ("amount", "channel", "account_balance", "is_fraud"):
        assert got[name].to_dict() == expected[name].to_dict(), name

    newest = {f.entity_id: f.features["account_balance"] for f, _ in pairs}
    cards = sorted(newest)[:20]
    online = store.get_online_features(
        features=["fraud_card:account_balance"], entity_rows=[{"card_id": c} for c in cards]
    ).to_dict()
    assert online["account_balance"] == [newest[c] for c in cards]


class _GatedIngest(IngestService):
    """The real service with a fault seam on its writer thread: each ``write`` call first
    runs the next step of ``script`` (``"block"``: wait for ``gate``; ``"fail"``: raise
    an ``OSError`` as a full disk would), then writes through the real sinks."""

    def __init__(self, *args: Any, script: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.script = script
        self.calls: list[str] = []
        self.gate = threading.Event()
        self.blocked = threading.Event()

    def write(self, batches: Any, unindexed: Any) -> int:
        step = self.script[len(self.calls)] if len(self.calls) < len(self.script) else "write"
        self.calls.append(step)
        if step == "block":
            self.blocked.set()
            self.gate.wait(30)
            raise OSError(28, "No space left on device")
        if step == "fail":
            raise OSError(28, "No space left on device")
        return super().write(batches, unindexed)


def _events(settings: Settings, seed: int) -> list[tuple[FeatureEvent, Any]]:
    pairs = list(Generator(GeneratorConfig(seed=seed, label_delay_s=2.0)).live(T0, N))
    with EventProducer(settings, "test") as producer:
        replay(producer, settings, pairs)
    return pairs


def _stored_labels(store: Any) -> int:
    frame, labelled = build_training_frame(store, load_layout(store, "fraud"), T0,
                                           T0 + timedelta(hours=1))
    assert len(frame) == labelled
    return labelled


def test_the_loop_reads_on_while_a_write_is_in_flight_and_commits_only_after_it(
    embedded_store: Any, settings: Settings
) -> None:
    """While the first write is held on the writer thread, the loop consumes the rest of
    the input, and the group commits nothing (every later row sits behind the held one);
    the write then fails once (a full disk), is retried with the same rows, and every
    row lands once, every offset committed, nothing dead-lettered.

    Catches offsets released when a write is handed over instead of when it finished
    (rows lost on a crash), a loop that waits for the writer (the input stops), a
    failed write dropped or dead-lettered instead of retried, a retry that writes twice.
    """
    _events(settings, seed=61)
    # the timer starts the first write early; the rest (under 2 x flush_rows) buffers
    service = _GatedIngest(settings, store=embedded_store, flush_rows=600, batch_size=50,
                           flush_interval_s=0.2, script=["block"])
    runner = threading.Thread(target=lambda: service.run(
        until=lambda: service.sink.rows >= 3 * N and service.buffer.rows == 0,
        idle_timeout_s=60))
    runner.start()
    try:
        assert service.blocked.wait(30), "no write started"
        deadline = time.monotonic() + 30
        while service.loop.stats.consumed < 2 * N and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.loop.stats.consumed == 2 * N  # read on with the first write held
        held = committed(settings, service.group_id, ["features", "labels"])
        # nothing committed past the first message of any partition (0, or none at all)
        assert len(held) == 6 and max(held.values()) <= 0, held
    finally:
        service.gate.set()
        runner.join(60)
    assert not runner.is_alive()
    assert service.calls[:2] == ["block", "write"]  # the failed write retried
    assert service.sink.rows == 3 * N and service.loop.stats.dead_lettered == 0
    assert _stored_labels(embedded_store) == N
    final = committed(settings, service.group_id, ["features", "labels"])
    assert sum(final.values()) == 2 * N  # every message committed, on all 6 partitions


def test_a_store_that_keeps_refusing_stops_the_service_with_nothing_dead_lettered(
    embedded_store: Any, settings: Settings
) -> None:
    """A write refused ``write_attempts`` times stops the loop with one clear error,
    dead-letters none of the valid events and commits none of their offsets; the next
    life, with a working store, writes every row.

    Catches the old path (a failing write raised from the handler, whose batches were
    retried, bisected and dead-lettered as ``handler_error``: valid events gone to the
    dead-letter topic for a store outage) and offsets committed past unwritten rows.
    """
    from streams.consumer import HandlerBroken

    _events(settings, seed=62)
    broken = _GatedIngest(settings, store=embedded_store, flush_rows=150, batch_size=50,
                          flush_interval_s=0.2, write_attempts=2, script=["fail"] * 10)
    with pytest.raises(HandlerBroken, match="refused 2 writes of the same"):
        broken.run(idle_timeout_s=60)
    assert broken.calls == ["fail", "fail"] and broken.sink.rows == 0
    assert broken.loop.stats.dead_lettered == 0
    assert max(committed(settings, broken.group_id, ["features", "labels"]).values()) <= 0
    dead = read_all(settings, "deadletter", quiet_s=1.0, timeout_s=10)
    assert dead == []

    healed = IngestService(settings, store=embedded_store, flush_rows=150, batch_size=50,
                           flush_interval_s=0.2)
    healed.run(until=lambda: healed.sink.rows >= 3 * N and healed.buffer.rows == 0,
               idle_timeout_s=60)
    assert healed.sink.rows == 3 * N and _stored_labels(embedded_store) == N


def test_labels_ahead_of_their_features_wait_in_the_broker_not_in_the_dead_letter_topic(
    embedded_store: Any, settings: Settings
) -> None:
    """A backlog whose labels are all read before their features (as a catch-up reads
    them: the labels topic's small messages come many per fetch) overflows the bound on
    waiting labels. The service pauses the labels topic at half the bound and reads it
    again once the features caught up: every label joins, none is dead-lettered.

    Catches labels pushed out of the pending buffer (``label_unmatched`` for valid
    labels, 300 - 40 = 260 of them here without the pause) and a paused topic never
    resumed (labels missing from the store).
    """
    pairs = list(Generator(GeneratorConfig(seed=63, label_delay_s=2.0)).live(T0, N))
    with EventProducer(settings, "test") as producer:
        for _, label in pairs:  # every label first, then every feature event
            producer.send(settings.topic("labels"), label, label.event_id, span=False)
        producer.flush()
        for features, _ in pairs:
            producer.send(settings.topic("features"), features, features.entity_id, span=False)
    service = IngestService(settings, store=embedded_store, flush_rows=100_000, batch_size=20,
                            flush_interval_s=0.2, max_pending_labels=40)
    paused: list[bool] = []

    def done() -> bool:
        paused.append(settings.topic("labels") in service.loop.paused_topics())
        return service.sink.rows >= 3 * N and service.buffer.rows == 0

    service.run(until=done, idle_timeout_s=20)
    assert service.loop.stats.dead_lettered == 0
    assert any(paused) and not paused[-1]  # paused on the way, read again by the end
    assert service.sink.rows == 3 * N and _stored_labels(embedded_store) == N
