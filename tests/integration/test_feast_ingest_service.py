"""End to end over the real broker: generated events -> Kafka -> ingest service -> Feast.

Parametrized over both store variants like the other Feast tests (the real one needs
Postgres and Redis, skipped with a reason when they are unreachable).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

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
