"""The closed-loop benchmark's models: Feast definitions (copied into each run's repo).

One model per task, ``cl_binary``, ``cl_multiclass`` (classes 0, 1, 2) and
``cl_regression``, each with six numeric inputs ``x0``..``x5`` keyed by the event
(join key ``event_id``), the unit as entity key (``unit_id``), and the label
``target`` in a view of its own, stamped with the event's time.
"""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64

DATA = Path(__file__).resolve().parent / "data" / "offline"
PARTS = "event_date=*/part-*.parquet"  # the append-only parts driftloop writes
FEATURES = ("x0", "x1", "x2", "x3", "x4", "x5")
TASKS = ("binary", "multiclass", "regression")

cl_event = Entity(name="cl_event", join_keys=["event_id"], value_type=ValueType.STRING,
                  description="One closed-loop benchmark event; join key is its event id.")


def _push_source(name: str, view: str) -> PushSource:
    batch = FileSource(name=f"{name}_batch", path=f"{DATA / view}/{PARTS}",
                       timestamp_field="event_timestamp", created_timestamp_column="created")
    return PushSource(name=name, batch_source=batch)


def _model(task: str) -> tuple[FeatureView, FeatureView, FeatureService]:
    model = f"cl_{task}"
    inputs = FeatureView(
        name=f"{model}_inputs", entities=[cl_event], ttl=timedelta(days=30),
        schema=[Field(name=name, dtype=Float64) for name in FEATURES],
        source=_push_source(f"{model}_inputs_push", f"{model}_inputs"),
        online=False, tags={"model": model},
    )
    labels = FeatureView(
        name=f"{model}_labels", entities=[cl_event], ttl=timedelta(days=30),
        schema=[Field(name="target", dtype=Float64)],
        source=_push_source(f"{model}_labels_push", f"{model}_labels"),
        online=False, tags={"model": model, "role": "label"},
    )
    service = FeatureService(
        name=model, features=[inputs],
        tags={"entity_key": "unit_id", "event_key": "event_id",
              "label_view": f"{model}_labels", "label": "target"},
        description=f"Inputs of the closed-loop benchmark's {task} model.",
    )
    return inputs, labels, service


cl_binary_inputs, cl_binary_labels, cl_binary = _model("binary")
cl_multiclass_inputs, cl_multiclass_labels, cl_multiclass = _model("multiclass")
cl_regression_inputs, cl_regression_labels, cl_regression = _model("regression")
