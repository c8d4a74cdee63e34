"""A hand-built layout of the fraud service for pure unit tests (no Feast import)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.features.feast_repo import LABEL_TIME_COLUMN, ModelLayout, ViewLayout
from services.features.generate import CATEGORIES, FEATURES
from services.featurespec import FeatureSpec, ModelSpec

TXN = FEATURES[:10]
CARD = FEATURES[10:]


def _kind(name: str) -> str:
    return "categorical" if name in CATEGORIES else "numeric"


@pytest.fixture
def layout() -> ModelLayout:
    features = tuple(
        FeatureSpec(n, _kind(n), critical=n == "channel")  # type: ignore[arg-type]
        for n in FEATURES
    )
    spec = ModelSpec("fraud", "card_id", features, "is_fraud", ("fraud_transaction", "fraud_card"))
    views = (
        ViewLayout(
            "fraud_transaction",
            "fraud_transaction_push",
            ("event_id",),
            TXN,
            tuple(_kind(n) for n in TXN),
            Path("t.parquet"),
            online=False,
        ),  # type: ignore[arg-type]
        ViewLayout(
            "fraud_card",
            "fraud_card_push",
            ("card_id",),
            CARD,
            tuple(_kind(n) for n in CARD),
            Path("c.parquet"),
        ),  # type: ignore[arg-type]
    )
    labels = ViewLayout(
        "fraud_labels",
        "fraud_labels_push",
        ("event_id",),
        ("is_fraud",),
        ("numeric",),
        Path("l.parquet"),
        ("card_id", LABEL_TIME_COLUMN),
        online=False,
    )
    return ModelLayout(spec=spec, event_key="event_id", views=views, labels=labels)
