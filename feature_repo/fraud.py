"""Card-payment fraud: entities, push sources, feature views and the ``fraud`` service.

Design (see README.md): every transaction is one event. Per-transaction features are
keyed by the ``transaction`` entity (join key ``event_id``, the feature event's id);
card state that evolves over time is keyed by the ``card`` entity (``card_id``, the
event's entity id) and joined as of the transaction time. Labels are keyed by the
transaction too and stamped with the *transaction's* time, so a training row joins its
label exactly and its features as they were when the prediction was made.

This file is the only list of the model's features: ``load_model_spec`` reads the
``fraud`` FeatureService, and ingest/snapshots read the views it projects.
"""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, String

CRITICAL = {"critical": "true"}
DATA = Path(__file__).resolve().parent / "data" / "offline"
"""Each view's rows: append-only parquet parts, ``<view>/event_date=YYYY-MM-DD/part-*.parquet``."""
PARTS = "event_date=*/part-*.parquet"

transaction = Entity(
    name="transaction",
    join_keys=["event_id"],
    value_type=ValueType.STRING,
    description="One card payment; join key is the feature event's event_id.",
)
card = Entity(
    name="card",
    join_keys=["card_id"],
    value_type=ValueType.STRING,
    description="A payment card; join key is the feature event's entity_id.",
)


def _push_source(name: str, view: str) -> PushSource:
    """A push source over the view's parts directory (the offline copy of every push).

    The path is absolute: Feast's DuckDB store reads it as given, not against the repo.
    """
    batch = FileSource(
        name=f"{name}_batch",
        path=f"{DATA / view}/{PARTS}",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )
    return PushSource(name=name, batch_source=batch)


fraud_transaction_push = _push_source("fraud_transaction_push", "fraud_transaction")
fraud_card_push = _push_source("fraud_card_push", "fraud_card")
fraud_labels_push = _push_source("fraud_labels_push", "fraud_labels")

fraud_transaction = FeatureView(
    name="fraud_transaction",
    entities=[transaction],
    ttl=timedelta(days=7),
    schema=[
        Field(name="amount", dtype=Float64),
        Field(name="amount_log", dtype=Float64),
        Field(name="merchant_risk_score", dtype=Float64),
        Field(name="distance_from_home_km", dtype=Float64),
        Field(name="minutes_since_last_txn", dtype=Float64),
        Field(name="hour_of_day", dtype=Float64),
        Field(name="amount_to_avg_ratio", dtype=Float64),
        Field(name="channel", dtype=String, tags=CRITICAL),
        Field(name="merchant_category", dtype=String),
        Field(name="country", dtype=String),
    ],
    source=fraud_transaction_push,
    # Per-payment values arrive with the scoring request itself; only card state is
    # looked up online. Offline-only also spares ingest Feast's per-row online write.
    online=False,
    tags={"model": "fraud"},
)

fraud_card = FeatureView(
    name="fraud_card",
    entities=[card],
    ttl=timedelta(days=30),
    schema=[
        Field(name="txn_count_1h", dtype=Float64),
        Field(name="txn_count_24h", dtype=Float64),
        Field(name="avg_amount_7d", dtype=Float64),
        Field(name="card_age_days", dtype=Float64),
        Field(name="account_balance", dtype=Float64),
        Field(name="velocity_score", dtype=Float64),
        Field(name="failed_pins_24h", dtype=Float64),
    ],
    source=fraud_card_push,
    online=True,
    tags={"model": "fraud"},
)

fraud_labels = FeatureView(
    name="fraud_labels",
    entities=[transaction],
    ttl=timedelta(days=7),
    schema=[Field(name="is_fraud", dtype=Float64)],
    source=fraud_labels_push,
    online=False,
    tags={"model": "fraud", "role": "label"},
)

fraud = FeatureService(
    name="fraud",
    features=[fraud_transaction, fraud_card],
    tags={
        "entity_key": "card_id",
        "event_key": "event_id",
        "label_view": "fraud_labels",
        "label": "is_fraud",
    },
    description="Inputs of the fraud model; the label lives in the fraud_labels view.",
)
