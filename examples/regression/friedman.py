"""Friedman: the regression example's Feast definitions (copy into your feature repo).

River's ``FriedmanDrift`` stream: ten inputs uniform in [0, 1], of which the first five
shape the target (``10 sin(pi x0 x1) + 20 (x2 - 0.5)^2 + 10 x3 + 5 x4`` plus noise).
Every measured unit is one event (join key ``event_id``), the machine it came from is
the entity key; the target, a real number, lives in the label view.
"""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64

DATA = Path(__file__).resolve().parent / "data" / "offline"
PARTS = "event_date=*/part-*.parquet"  # the append-only parts driftloop writes
FEATURES = tuple(f"x{i}" for i in range(10))

measurement = Entity(name="friedman_measurement", join_keys=["event_id"],
                     value_type=ValueType.STRING,
                     description="One measured unit; join key is the feature event's id.")


def _push_source(name: str, view: str) -> PushSource:
    batch = FileSource(name=f"{name}_batch", path=f"{DATA / view}/{PARTS}",
                       timestamp_field="event_timestamp", created_timestamp_column="created")
    return PushSource(name=name, batch_source=batch)


friedman_inputs = FeatureView(
    name="friedman_inputs",
    entities=[measurement],
    ttl=timedelta(days=30),
    schema=[Field(name=name, dtype=Float64) for name in FEATURES],
    source=_push_source("friedman_inputs_push", "friedman_inputs"),
    online=False,
    tags={"model": "friedman"},
)

friedman_labels = FeatureView(
    name="friedman_labels",
    entities=[measurement],
    ttl=timedelta(days=30),
    schema=[Field(name="target", dtype=Float64)],
    source=_push_source("friedman_labels_push", "friedman_labels"),
    online=False,
    tags={"model": "friedman", "role": "label"},
)

friedman = FeatureService(
    name="friedman",
    features=[friedman_inputs],
    tags={"entity_key": "machine_id", "event_key": "event_id",
          "label_view": "friedman_labels", "label": "target"},
    description="Inputs of the friedman model (regression).",
)
