"""The same parquet parts through three offline engines: Feast's file store, Feast's
DuckDB store and the embedded default (DuckDB with an ASOF join), all real.

Point-in-time edge cases, each engine's answer asserted:
- a card whose only row is older than the TTL: DuckDB (both) keeps the entity row with
  null features, as Feast documents; the file store drops the row;
- an unknown card: null features everywhere;
- two rows of one card with the same timestamp: the newer ``created`` wins;
- two entity rows with the same key and timestamp (feast issue 6787): both come back
  on DuckDB; the file store collapses them into one (wrong);
- a feature row that arrived late (written after the entity time, event time before
  it) is used: the join goes by event time, not by arrival;
- a corrected (late) label replaces the first in a snapshot.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from services.features.feast_repo import (
    apply_repo,
    arrow_schema,
    copy_repo,
    load_layout,
    load_repo_config_dict,
    open_repo,
)
from services.features.generate import Generator, GeneratorConfig
from services.features.history import write_history
from services.features.sink import append_parts
from services.features.snapshot import build_training_frame
from streams.settings import FeastSettings

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::RuntimeWarning")]
T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)
CARD_FEATURES = ["txn_count_1h", "txn_count_24h", "avg_amount_7d", "card_age_days",
                 "account_balance", "velocity_score", "failed_pins_24h"]
ENGINES = ("file", "duckdb", "asof")


def _stores(tmp_path: Path) -> dict[str, Any]:
    """One repo (one registry, one set of parts) opened with each offline engine."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    repo = copy_repo(tmp_path / "repo")
    project = f"t_{uuid.uuid4().hex[:12]}"
    stores = {"asof": open_repo("embedded", repo_path=repo, project=project),
              "file": open_repo("file", repo_path=repo, project=project)}
    raw = load_repo_config_dict(FeastSettings(repo=repo, project=project))
    raw["offline_store"] = {"type": "duckdb"}
    config = RepoConfig(**raw)
    config.repo_path = repo
    stores["duckdb"] = FeatureStore(repo_path=str(repo), config=config)
    assert stores["asof"].config.offline_store.type.endswith("DuckDBAsofOfflineStore")
    apply_repo(stores["asof"])
    return stores


def _card_rows(store: Any, rows: list[tuple[str, datetime, datetime, float]]) -> None:
    """Card rows (card, event time, created, account_balance) as one new part each call."""
    view = load_layout(store, "fraud").views[1]
    frame = pd.DataFrame({
        "card_id": [r[0] for r in rows],
        **{f: [1.0] * len(rows) for f in CARD_FEATURES if f != "account_balance"},
        "account_balance": [r[3] for r in rows],
        "event_timestamp": pd.to_datetime([r[1] for r in rows], utc=True),
        "created": pd.to_datetime([r[2] for r in rows], utc=True),
    })
    append_parts(view.path, frame, arrow_schema(view))


def _join(store: Any, entity: pd.DataFrame) -> list[tuple[str, str, float | None]]:
    out = store.get_historical_features(
        entity_df=entity.copy(), features=["fraud_card:account_balance"]).to_df()
    rows = [(r.event_id, r.card_id, None if pd.isna(r.account_balance) else r.account_balance)
            for r in out.itertuples()]
    return sorted(rows, key=lambda r: (r[0], r[1], -1.0 if r[2] is None else r[2]))


def test_point_in_time_edge_cases_on_each_engine(tmp_path: Path) -> None:
    stores = _stores(tmp_path)
    hour = timedelta(hours=1)
    _card_rows(stores["asof"], [
        ("c1", T0, T0, 1.0),
        ("c1", T0 + hour, T0 + hour, 2.0),
        ("c1", T0 + 2 * hour, T0 + 2 * hour, 3.0),
        ("c2", T0 - timedelta(days=40), T0 - timedelta(days=40), 9.0),  # outside the 30-day TTL
    ])
    # later arrivals, in a part of their own: a correction of c1 at T0+2h (same key and
    # timestamp, newer created) and a late row of c4 that happened before its entity time
    _card_rows(stores["asof"], [("c1", T0 + 2 * hour, T0 + 5 * hour, 4.0),
                                ("c4", T0, T0 + 6 * hour, 7.0)])
    entity = pd.DataFrame({
        "event_id": ["a", "b", "b", "c", "d", "e"],
        "card_id": ["c1", "c1", "c1", "c2", "c3", "c4"],
        "event_timestamp": pd.to_datetime(
            [T0 + 2 * hour, T0 + 1.5 * hour, T0 + 1.5 * hour, T0, T0, T0 + hour], utc=True),
    })
    correct = [("a", "c1", 4.0), ("b", "c1", 2.0), ("b", "c1", 2.0), ("c", "c2", None),
               ("d", "c3", None), ("e", "c4", 7.0)]
    got = {name: _join(store, entity) for name, store in stores.items()}
    assert got["asof"] == correct
    assert got["duckdb"] == correct
    # the file store drops the entity row whose card is outside the TTL and collapses
    # the two same-key, same-time rows (feast issue 6787)
    assert got["file"] == [("a", "c1", 4.0), ("b", "c1", 2.0), ("d", "c3", None),
                           ("e", "c4", 7.0)]


def test_snapshots_are_equal_row_for_row_on_every_engine(tmp_path: Path) -> None:
    stores = _stores(tmp_path)
    store = stores["asof"]
    history = Generator(GeneratorConfig(seed=7)).history(T0, 3000)
    write_history(store, history)
    layout = load_layout(store, "fraud")
    # a corrected label for the first 50 events, arriving a day later in a new part
    first = history.sort_values("event_timestamp").head(50)
    late = pd.DataFrame({
        "event_id": first["event_id"], "card_id": first["card_id"],
        "label_time": first["label_time"] + timedelta(days=1),
        "is_fraud": 1.0 - first["is_fraud"],
        "event_timestamp": first["event_timestamp"],
        "created": first["label_time"] + timedelta(days=1),
    })
    append_parts(layout.labels.path, late, arrow_schema(layout.labels))
    start, end = T0 - timedelta(days=30), T0 + timedelta(days=1)
    frames = {name: build_training_frame(s, layout, start, end) for name, s in stores.items()}
    expected = history.set_index("event_id")["is_fraud"].copy()
    expected.loc[first["event_id"]] = 1.0 - first["is_fraud"].to_numpy()
    for name, (frame, labelled) in frames.items():
        assert labelled == len(history) and len(frame) == len(history), name
        got = frame.set_index("event_id")["is_fraud"]
        assert got.sort_index().equals(expected.sort_index().astype(np.float64)), name
    for name in ("file", "duckdb"):
        pd.testing.assert_frame_equal(frames[name][0], frames["asof"][0], check_exact=True)
