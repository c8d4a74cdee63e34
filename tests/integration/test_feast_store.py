"""Feast repo, pushes, point-in-time joins and snapshots, on both store variants.

``embedded``: SQLite online store, file registry. ``real``: Redis online store and a
SQL registry on Postgres (skipped with a reason when they are unreachable, a failure
under DRIFTLOOP_REQUIRE_SERVICES=1). The offline store is parquet files in both.
Every test gets its own repo copy (data dir) and its own project name, which also
scopes the registry rows and the Redis keys.
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
    load_model_spec,
    open_repo,
)
from services.features.generate import Generator, GeneratorConfig
from services.features.history import write_history
from services.features.ingest import IngestBuffer
from services.features.sink import push_batches
from services.features.snapshot import (
    build_training_frame,
    content_hash,
    create_snapshot,
    load_profile_for_snapshot,
    load_snapshot_frame,
)
from streams.contracts import FeatureEvent, LabelEvent

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::RuntimeWarning")]
T0 = datetime(2026, 3, 1, tzinfo=UTC)
BASE = next(iter(Generator(GeneratorConfig(seed=5)).live(T0, 1)))[0].features


def make_store(
    variant: str, request: pytest.FixtureRequest, tmp_path: Path, name: str = "repo"
) -> Any:
    real: dict[str, str] = {}
    if variant == "real":
        dsn = request.getfixturevalue("postgres_dsn")
        redis = request.getfixturevalue("redis_url")
        real = {"registry_url": f"{dsn}?sslmode=disable", "redis": redis}
    project = f"t_{uuid.uuid4().hex[:12]}"
    store = open_repo(variant, repo_path=copy_repo(tmp_path / name), project=project, **real)
    apply_repo(store)
    return store


@pytest.fixture(params=["embedded", pytest.param("real", marks=pytest.mark.services)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    s = make_store(request.param, request, tmp_path)
    yield s
    drop_project(s)


def feature_event(event_id: str, card: str, at: datetime, **values: float | str) -> FeatureEvent:
    return FeatureEvent(
        event_id=event_id, model="fraud", entity_id=card, event_time=at, features={**BASE, **values}
    )


def label_event(event_id: str, label: float, at: datetime) -> LabelEvent:
    return LabelEvent(event_id=event_id, model="fraud", label=label, event_time=at)


def ingest(store: Any, events: list[FeatureEvent | LabelEvent]) -> None:
    """Push events through the ingest core and sink, as the ingest service does."""
    buffer = IngestBuffer({"fraud": load_layout(store, "fraud")})
    for event in events:
        out = (
            buffer.add_features(event)
            if isinstance(event, FeatureEvent)
            else (buffer.add_label(event))
        )
        assert out is None, out
    push_batches(store, buffer.take())


def test_load_model_spec_reads_the_feature_service(store: Any) -> None:
    spec = load_model_spec(store, "fraud")
    assert spec.model == "fraud" and spec.entity == "card_id" and spec.label == "is_fraud"
    assert len(spec.numeric) >= 12 and len(spec.categorical) >= 3
    assert {f.name for f in spec.categorical} == {"channel", "merchant_category", "country"}
    assert [f.name for f in spec.features if f.critical] == ["channel"]
    assert spec.feature_views == ("fraud_transaction", "fraud_card")

    # Change the service in the registry: the spec follows it (no second list in code).
    from feast import FeatureService

    txn = store.get_feature_view("fraud_transaction")
    card = store.get_feature_view("fraud_card")
    old = store.get_feature_service("fraud")
    store.apply(
        [
            FeatureService(
                name="fraud",
                features=[card[["account_balance"]], txn[["channel", "amount"]]],
                tags=old.tags,
            )
        ]
    )
    narrowed = load_model_spec(store, "fraud")
    assert narrowed.names == ("account_balance", "channel", "amount")
    assert narrowed.feature_views == ("fraud_card", "fraud_transaction")
    assert narrowed.features[1].critical


def test_push_is_readable_online_with_the_latest_values(store: Any) -> None:
    t = T0
    ingest(store, [feature_event("e1", "c1", t, account_balance=100.0, amount=10.0)])
    ingest(
        store,
        [
            feature_event(
                "e2", "c1", t + timedelta(minutes=5), account_balance=900.0, failed_pins_24h=2.0
            ),
            feature_event("e3", "c2", t + timedelta(minutes=6), account_balance=7.0),
            # Same batch, same card, newer event: the newest row is what online shows.
            feature_event("e4", "c2", t + timedelta(minutes=7), account_balance=8.0),
        ],
    )
    rows = store.get_online_features(
        features=["fraud_card:account_balance", "fraud_card:failed_pins_24h"],
        entity_rows=[{"card_id": "c1"}, {"card_id": "c2"}, {"card_id": "unknown"}],
    ).to_dict()
    assert rows["account_balance"] == [900.0, 8.0, None]
    assert rows["failed_pins_24h"] == [2.0, BASE["failed_pins_24h"], None]
    # Every row of both pushes also reached the offline parquet files.
    layout = load_layout(store, "fraud")
    card_rows = pd.read_parquet(layout.views[1].path)
    assert sorted(card_rows["account_balance"]) == [7.0, 8.0, 100.0, 900.0]
    txn_rows = pd.read_parquet(layout.views[0].path)
    assert sorted(txn_rows["event_id"]) == ["e1", "e2", "e3", "e4"]
    assert str(txn_rows["created"].dt.tz) == "UTC"


def test_online_write_stores_what_feasts_push_stores(
    store: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The sink's direct ``online_write_batch`` leaves the online store as ``push`` does.

    Catches a sink whose protos differ from Feast's conversion: a null feature written
    as a NaN double instead of an empty value, a timestamp shifted by its zone, a
    wrong entity key serialization (the rows would not be found by ``push``'s key).
    On SQLite the card view (all doubles) takes the sink's ``executemany`` path, whose
    rows (value bytes, ``value_text``, timestamps) are compared byte for byte.
    """
    from feast.data_source import PushMode

    from services.features.sink import write_online

    t = T0 + timedelta(hours=1)
    events = [
        feature_event("e1", "c1", t, account_balance=100.0),
        feature_event("e2", "c2", t + timedelta(seconds=1), account_balance=None,
                      velocity_score=None),
        feature_event("e3", "c1", t + timedelta(seconds=2), account_balance=-5.5),
        feature_event("e4", "c3", t + timedelta(seconds=3), txn_count_1h=None),
    ]
    buffer = IngestBuffer({"fraud": load_layout(store, "fraud")})
    for event in events:
        assert buffer.add_features(event) is None
    card = next(b for b in buffer.take() if b.view == "fraud_card")
    assert card.online is not None and len(card.online) == 3
    twin = make_store(request.node.callspec.params["store"], request, tmp_path, "twin")
    try:
        write_online(store, card.push_source, card.online)
        twin.push(card.push_source, card.online, to=PushMode.ONLINE)
        features = [f"fraud_card:{f.name}" for f in store.get_feature_view("fraud_card").features]
        rows = [{"card_id": c} for c in ("c1", "c2", "c3")]
        ours = store.get_online_features(features=features, entity_rows=rows).to_dict()
        feasts = twin.get_online_features(features=features, entity_rows=rows).to_dict()
        assert ours == feasts
        assert ours["account_balance"] == [-5.5, None, BASE["account_balance"]]
        assert ours["velocity_score"][1] is None and ours["txn_count_1h"][2] is None
        if store.config.online_store.type == "sqlite":  # byte for byte, timestamps included
            import sqlite3

            from feast.infra.online_stores.sqlite import SqliteOnlineStore

            def table(s: Any) -> list[tuple[Any, ...]]:
                with sqlite3.connect(SqliteOnlineStore._get_db_path(s.config)) as db:
                    return sorted(db.execute(
                        "SELECT entity_key, feature_name, value, value_text, event_ts,"
                        f" created_ts FROM {s.project}_fraud_card").fetchall())

            assert table(store) == table(twin) and len(table(store)) == 3 * 7
    finally:
        drop_project(twin)


def test_historical_join_is_point_in_time_correct(store: Any) -> None:
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=10)
    ingest(
        store,
        [
            feature_event("e1", "c1", t1, account_balance=150.0, txn_count_1h=1.0),
            feature_event("e2", "c1", t2, account_balance=900.0, txn_count_1h=7.0),
            feature_event("e3", "c2", t1 + timedelta(seconds=30), account_balance=42.0),
            # e1's label arrives after e2 happened: it must still see the card as of t1.
            label_event("e2", 0.0, t2 + timedelta(seconds=5)),
            label_event("e1", 1.0, t2 + timedelta(minutes=3)),
            label_event("e3", 0.0, t2 + timedelta(minutes=4)),
        ],
    )
    layout = load_layout(store, "fraud")
    frame, labelled = build_training_frame(store, layout, T0, T0 + timedelta(hours=1))
    assert labelled == 3
    by_id = frame.set_index("event_id")
    # A latest-value join would give e1 the 900.0 / 7.0 of the later event: a leak.
    assert by_id.loc["e1", "account_balance"] == 150.0
    assert by_id.loc["e1", "txn_count_1h"] == 1.0
    assert by_id.loc["e2", "account_balance"] == 900.0
    assert by_id.loc["e3", "account_balance"] == 42.0
    assert by_id["is_fraud"].to_dict() == {"e1": 1.0, "e2": 0.0, "e3": 0.0}
    assert by_id.loc["e1", "event_timestamp"] == pd.Timestamp(t1)
    # The window is on feature time: [t1 + 1s, end) leaves e1 out.
    later, _ = build_training_frame(store, layout, t1 + timedelta(seconds=1), t2 + timedelta(1))
    assert sorted(later["event_id"]) == ["e2", "e3"]


def test_snapshot_id_is_stable_and_follows_the_data(
    store: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    history = Generator(GeneratorConfig(seed=31)).history(T0, 3000)
    write_history(store, history)
    spec = load_model_spec(store, "fraud")
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=1)
    first = create_snapshot(store, spec, start, end, with_profile=False)
    again = create_snapshot(store, spec, start, end, with_profile=False)
    assert first.rows == 3000 and first.created and not again.created
    assert again.snapshot_id == first.snapshot_id and again.sha256 == first.sha256
    assert first.snapshot_id.startswith("fraud-")

    # Same data in another store (other project, other directory): same id.
    other = make_store(request.node.callspec.params["store"], request, tmp_path, "other")
    try:
        write_history(other, history)
        assert create_snapshot(other, spec, start, end, with_profile=False).snapshot_id == (
            first.snapshot_id
        )
    finally:
        drop_project(other)

    # The saved dataset reads back to exactly the hashed data.
    frame = load_snapshot_frame(store, first.snapshot_id)
    assert len(frame) == 3000 and content_hash(frame) == first.sha256

    # One more labelled event in the window: a new id; the old one still loads.
    late = T0 - timedelta(seconds=1)
    ingest(store, [feature_event("extra", "c9", late), label_event("extra", 1.0, T0)])
    changed = create_snapshot(store, spec, start, end, with_profile=False)
    assert changed.snapshot_id != first.snapshot_id and changed.rows == 3001
    assert len(load_snapshot_frame(store, first.snapshot_id)) == 3000

    # Tampering with the stored file is detected.
    tampered = pd.read_parquet(first.path)
    tampered.loc[0, "amount"] += 1.0
    tampered.to_parquet(first.path, index=False)
    with pytest.raises(ValueError, match="content changed"):
        load_snapshot_frame(store, first.snapshot_id)


def test_profile_rebuilt_from_saved_dataset_equals_cached(store: Any, tmp_path: Path) -> None:
    from services.drift.profile import ProfileCache

    write_history(store, Generator(GeneratorConfig(seed=41)).history(T0, 2000))
    spec = load_model_spec(store, "fraud")
    snap = create_snapshot(
        store, spec, T0 - timedelta(days=1), T0 + timedelta(days=1), cache_root=tmp_path / "cache-a"
    )
    assert snap.profile is not None and snap.profile.snapshot_id == snap.snapshot_id
    assert snap.profile.n_rows == 2000
    # From disk (a fresh cache object), and rebuilt from the saved dataset (empty cache).
    cached = load_profile_for_snapshot(store, spec, snap.snapshot_id, tmp_path / "cache-a")
    assert ProfileCache(tmp_path / "cache-b").get(snap.snapshot_id) is None
    rebuilt = load_profile_for_snapshot(store, spec, snap.snapshot_id, tmp_path / "cache-b")
    assert ProfileCache(tmp_path / "cache-b").get(snap.snapshot_id) == rebuilt
    assert cached == snap.profile
    assert rebuilt == snap.profile
    assert [p.name for p in rebuilt.numeric] == [f.name for f in spec.numeric]


def test_champion_profile_comes_from_the_registered_snapshot(store: Any, tmp_path: Path) -> None:
    import torch

    from services.features.snapshot import load_champion_profile
    from services.registry.manifest import Lineage
    from services.registry.store import ModelRegistry

    write_history(store, Generator(GeneratorConfig(seed=43)).history(T0, 1500))
    spec = load_model_spec(store, "fraud")
    snap = create_snapshot(
        store, spec, T0 - timedelta(days=1), T0 + timedelta(days=1), with_profile=False
    )
    registry = ModelRegistry(str(tmp_path / "registry"))
    assert load_champion_profile(store, spec, registry, tmp_path / "cache") is None
    version = registry.register(
        "fraud",
        state_dict={"w": torch.zeros(1)},
        preprocessing={},
        model_meta={},
        lineage=Lineage(training_snapshot_id=snap.snapshot_id),
        hyperparameters={},
        metrics={},
        seeds={},
    ).version
    registry.set_alias("fraud", "champion", version, expected=None)
    profile = load_champion_profile(store, spec, registry, tmp_path / "cache")
    assert profile is not None and profile.snapshot_id == snap.snapshot_id
    assert profile.n_rows == 1500
