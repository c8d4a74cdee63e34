"""Phishing pages: the binary example's Feast definitions (copy into your feature repo).

River's bundled Phishing dataset: nine numeric signals of a web page (0, 0.5 or 1) and
whether the page is a phishing page. Every scored page view is one event: its signals
are keyed by the event (join key ``event_id``), the page is the entity key
(``site_id``), and the label lives in a view of its own, stamped with the event's time.
The ``phishing`` FeatureService is the model's only list of inputs.
"""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64

DATA = Path(__file__).resolve().parent / "data" / "offline"
PARTS = "event_date=*/part-*.parquet"  # the append-only parts driftloop writes
FEATURES = ("empty_server_form_handler", "popup_window", "https", "request_from_other_domain",
            "anchor_from_other_domain", "is_popular", "long_url", "age_of_domain", "ip_in_url")

page_view = Entity(name="page_view", join_keys=["event_id"], value_type=ValueType.STRING,
                   description="One scored page view; join key is the feature event's id.")


def _push_source(name: str, view: str) -> PushSource:
    batch = FileSource(name=f"{name}_batch", path=f"{DATA / view}/{PARTS}",
                       timestamp_field="event_timestamp", created_timestamp_column="created")
    return PushSource(name=name, batch_source=batch)


phishing_page = FeatureView(
    name="phishing_page",
    entities=[page_view],
    ttl=timedelta(days=30),
    schema=[Field(name=name, dtype=Float64) for name in FEATURES],
    source=_push_source("phishing_page_push", "phishing_page"),
    online=False,  # the signals arrive with each scoring request
    tags={"model": "phishing"},
)

phishing_labels = FeatureView(
    name="phishing_labels",
    entities=[page_view],
    ttl=timedelta(days=30),
    schema=[Field(name="is_phishing", dtype=Float64)],
    source=_push_source("phishing_labels_push", "phishing_labels"),
    online=False,
    tags={"model": "phishing", "role": "label"},
)

phishing = FeatureService(
    name="phishing",
    features=[phishing_page],
    tags={"entity_key": "site_id", "event_key": "event_id",
          "label_view": "phishing_labels", "label": "is_phishing"},
    description="Inputs of the phishing model (binary); labels in phishing_labels.",
)
