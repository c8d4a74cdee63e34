"""The same parquet parts and definitions on DuckDB and on Spark.

One repo copy holds the data once (``data/offline/<view>/event_date=*/part-*.parquet``);
the embedded variant (DuckDB: Feast's DuckDB store with its point-in-time join as an
ASOF JOIN) and the ``spark`` variant (Feast's Spark offline store, pyspark in local
mode) each register the repo's definitions and
take the same snapshot. The snapshots must be equal row for row, and the point-in-time
cases below must come out as computed by hand, on both engines:

- a card whose only state is older than the view's TTL: the payment's row is kept,
  its card features are null (not dropped);
- two payments of one card at the same instant: two rows (not collapsed);
- a label corrected later (a newer ``created``): the newest label wins, and the
  features are still those as of the payment's time;
- the card's state changing after a payment: the payment sees the older state.

Spark starts in seconds, so the data is written once and each engine is opened once
for the module (one SparkSession, two cores, small data).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from services.features.feast_repo import (
    CREATED_COLUMN,
    LABEL_TIME_COLUMN,
    TIMESTAMP_COLUMN,
    ModelLayout,
    apply_repo,
    arrow_schema,
    copy_repo,
    load_layout,
    load_model_spec,
    open_repo,
)
from services.features.generate import Generator, GeneratorConfig
from services.features.history import write_history
from services.features.parts import write_parts
from services.features.snapshot import (
    build_training_frame,
    content_hash,
    create_snapshot,
    load_snapshot_frame,
)

# ~35 s alone on 2 cores; the module's first test also pays for the data and a JVM,
# which took over 300 s once with the machine's load average above 20.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.filterwarnings("ignore::RuntimeWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HISTORY_ROWS = 1500
WINDOW = (T0 - timedelta(days=2), T0 + timedelta(days=1))
BASE = next(iter(Generator(GeneratorConfig(seed=5)).live(T0, 1)))[0].features


def _rows(view_columns: tuple[str, ...], rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of one view; features not given take the BASE payment's values."""
    filled = [{c: r.get(c, BASE.get(c)) for c in view_columns} for r in rows]
    return pd.DataFrame(filled, columns=list(view_columns))


def _append(view: Any, frame: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(frame, schema=arrow_schema(view), preserve_index=False)
    write_parts(view.path, table, TIMESTAMP_COLUMN)


def write_edge_cases(layout: ModelLayout) -> None:
    """The point-in-time cases, written as parts beside the generated history."""
    tx, card = layout.views
    t1, t2, t3 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    old = T0 - timedelta(days=40)  # older than fraud_card's 30-day TTL
    _append(tx, _rows(tx.columns, [
        {"event_id": "e1", "amount": 10.0, TIMESTAMP_COLUMN: t1, CREATED_COLUMN: t1},
        {"event_id": "e2", "amount": 20.0, TIMESTAMP_COLUMN: t2, CREATED_COLUMN: t2},
        {"event_id": "e7", "amount": 70.0, TIMESTAMP_COLUMN: t2, CREATED_COLUMN: t2},
        {"event_id": "e8", "amount": 80.0, TIMESTAMP_COLUMN: t3, CREATED_COLUMN: t3},
        {"event_id": "e9", "amount": 90.0, TIMESTAMP_COLUMN: t3, CREATED_COLUMN: t3},
        {"event_id": "e-unlabelled", "amount": 1.0, TIMESTAMP_COLUMN: t3, CREATED_COLUMN: t3},
    ]))
    _append(card, _rows(card.columns, [
        {"card_id": "c1", "account_balance": 150.0, TIMESTAMP_COLUMN: t1, CREATED_COLUMN: t1},
        {"card_id": "c1", "account_balance": 900.0, TIMESTAMP_COLUMN: t2, CREATED_COLUMN: t2},
        {"card_id": "c7", "account_balance": 7.0, TIMESTAMP_COLUMN: old, CREATED_COLUMN: old},
        {"card_id": "c8", "account_balance": 55.0, TIMESTAMP_COLUMN: t3, CREATED_COLUMN: t3},
    ]))
    labels = layout.labels
    late = t3 + timedelta(hours=2)
    _append(labels, _rows(labels.columns, [
        {"event_id": "e1", "card_id": "c1", "is_fraud": 0.0, TIMESTAMP_COLUMN: t1,
         LABEL_TIME_COLUMN: t1 + timedelta(minutes=1), CREATED_COLUMN: t1 + timedelta(minutes=1)},
        # e1's label is corrected after e2 happened (a later created time): 1.0 wins.
        {"event_id": "e1", "card_id": "c1", "is_fraud": 1.0, TIMESTAMP_COLUMN: t1,
         LABEL_TIME_COLUMN: late, CREATED_COLUMN: late},
        {"event_id": "e2", "card_id": "c1", "is_fraud": 0.0, TIMESTAMP_COLUMN: t2,
         LABEL_TIME_COLUMN: late, CREATED_COLUMN: late},
        {"event_id": "e7", "card_id": "c7", "is_fraud": 1.0, TIMESTAMP_COLUMN: t2,
         LABEL_TIME_COLUMN: late, CREATED_COLUMN: late},
        {"event_id": "e8", "card_id": "c8", "is_fraud": 0.0, TIMESTAMP_COLUMN: t3,
         LABEL_TIME_COLUMN: late, CREATED_COLUMN: late},
        {"event_id": "e9", "card_id": "c8", "is_fraud": 1.0, TIMESTAMP_COLUMN: t3,
         LABEL_TIME_COLUMN: late, CREATED_COLUMN: late},
    ]))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repo copy with the history and the edge cases written once, as parts."""
    path = copy_repo(tmp_path_factory.mktemp("engines") / "repo")
    store = open_repo("embedded", repo_path=path, project=f"t_{uuid.uuid4().hex[:12]}")
    apply_repo(store)
    write_history(store, Generator(GeneratorConfig(seed=41)).history(T0, HISTORY_ROWS))
    write_edge_cases(load_layout(store, "fraud"))
    return path


@pytest.fixture(scope="module")
def stores(repo: Path) -> dict[str, Any]:
    """A store per engine over the same repo and parts (each with its own registry)."""
    out: dict[str, Any] = {}
    for variant, engine in (("embedded", "duckdb"), ("spark", "spark")):
        store = open_repo(variant, repo_path=repo, project=f"t_{uuid.uuid4().hex[:12]}")
        assert engine in store.config.offline_store.type.lower()
        apply_repo(store)
        out[engine] = store
    return out


@pytest.fixture(scope="module")
def snapshots(stores: dict[str, Any]) -> Iterator[dict[str, pd.DataFrame]]:
    """The window's training frame from each engine over the same parts."""
    frames: dict[str, pd.DataFrame] = {}
    for engine, store in stores.items():
        frames[engine], _ = build_training_frame(store, load_layout(store, "fraud"), *WINDOW)
    yield frames
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_point_in_time_cases(snapshots: dict[str, pd.DataFrame], engine: str) -> None:
    frame = snapshots[engine]
    assert len(frame) == HISTORY_ROWS + 5  # every labelled payment; the unlabelled one not
    assert "e-unlabelled" not in set(frame["event_id"])
    by_id = frame.set_index("event_id")
    # The card's state as of each payment, not the latest one.
    assert by_id.loc["e1", "account_balance"] == 150.0
    assert by_id.loc["e2", "account_balance"] == 900.0
    # A corrected label: the newest one.
    assert by_id.loc["e1", "is_fraud"] == 1.0
    # No card state within the TTL: the row stays, its card features are null.
    assert by_id.loc["e7", "amount"] == 70.0
    assert np.isnan(by_id.loc["e7", "account_balance"])
    # Same card, same instant: both payments, each with its own features and label.
    same = frame[frame["card_id"] == "c8"].set_index("event_id")
    assert sorted(same.index) == ["e8", "e9"]
    assert same["amount"].to_dict() == {"e8": 80.0, "e9": 90.0}
    assert same["account_balance"].to_dict() == {"e8": 55.0, "e9": 55.0}
    assert same["is_fraud"].to_dict() == {"e8": 0.0, "e9": 1.0}


def test_spark_snapshot_equals_duckdb_row_for_row(snapshots: dict[str, pd.DataFrame]) -> None:
    duck, spark = snapshots["duckdb"], snapshots["spark"]
    assert len(duck) == HISTORY_ROWS + 5
    pd.testing.assert_frame_equal(spark, duck, check_exact=True)
    assert content_hash(spark) == content_hash(duck)  # the snapshot id would be the same


def test_saved_snapshots_agree_and_load_back_on_both(
    stores: dict[str, Any], snapshots: dict[str, pd.DataFrame]
) -> None:
    """``create_snapshot`` names the same data the same on both engines, and each engine
    reads its saved dataset back to exactly the hashed rows."""
    made = {engine: create_snapshot(store, load_model_spec(store, "fraud"), *WINDOW,
                                    with_profile=False) for engine, store in stores.items()}
    assert made["spark"].snapshot_id == made["duckdb"].snapshot_id
    assert made["spark"].rows == HISTORY_ROWS + 5
    for engine, store in stores.items():
        frame = load_snapshot_frame(store, made[engine].snapshot_id)
        pd.testing.assert_frame_equal(frame, snapshots["duckdb"], check_exact=True)
