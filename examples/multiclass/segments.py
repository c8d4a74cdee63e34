"""Image segments: the multiclass example's Feast definitions (copy into your feature repo).

River's bundled ImageSegments dataset: 18 numeric measurements of a 3x3 region of an
outdoor image and what the region shows, one of seven classes (brickface, cement,
foliage, grass, path, sky, window), stored as the class numbers 0..6 the model's
``task: {kind: multiclass, classes: [0, 1, 2, 3, 4, 5, 6]}`` declares. Every
classified region is one event (join key ``event_id``); the image is the entity key.
"""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64

DATA = Path(__file__).resolve().parent / "data" / "offline"
PARTS = "event_date=*/part-*.parquet"  # the append-only parts driftloop writes
FEATURES = ("region_centroid_col", "region_centroid_row", "short_line_density_5",
            "short_line_density_2", "vedge_mean", "vegde_sd", "hedge_mean", "hedge_sd",
            "intensity_mean", "rawred_mean", "rawblue_mean", "rawgreen_mean", "exred_mean",
            "exblue_mean", "exgreen_mean", "value_mean", "saturation_mean", "hue_mean")

region = Entity(name="segment_region", join_keys=["event_id"], value_type=ValueType.STRING,
                description="One classified image region; join key is the feature event's id.")


def _push_source(name: str, view: str) -> PushSource:
    batch = FileSource(name=f"{name}_batch", path=f"{DATA / view}/{PARTS}",
                       timestamp_field="event_timestamp", created_timestamp_column="created")
    return PushSource(name=name, batch_source=batch)


segments_region = FeatureView(
    name="segments_region",
    entities=[region],
    ttl=timedelta(days=30),
    schema=[Field(name=name, dtype=Float64) for name in FEATURES],
    source=_push_source("segments_region_push", "segments_region"),
    online=False,
    tags={"model": "segments"},
)

segments_labels = FeatureView(
    name="segments_labels",
    entities=[region],
    ttl=timedelta(days=30),
    schema=[Field(name="segment_class", dtype=Float64)],  # 0..6, see the module doc
    source=_push_source("segments_labels_push", "segments_labels"),
    online=False,
    tags={"model": "segments", "role": "label"},
)

segments = FeatureService(
    name="segments",
    features=[segments_region],
    tags={"entity_key": "image_id", "event_key": "event_id",
          "label_view": "segments_labels", "label": "segment_class"},
    description="Inputs of the segments model (multiclass, 7 classes).",
)
