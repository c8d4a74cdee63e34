"""Feature/label join of the online service: order-independent, bounded, duplicate-proof."""

from __future__ import annotations

import base64
import pickle
from datetime import UTC, datetime

from services.online.join import LabelJoin

T = datetime(2026, 4, 1, tzinfo=UTC)


def test_features_then_label_and_label_then_features_both_join() -> None:
    join = LabelJoin(early_label_ttl=10)
    assert join.add_features("a", "m", {"x": 1.0}, now=0) is None
    joined = join.add_label("a", "m", 1.0, T, now=1)
    assert joined is not None and joined.features == {"x": 1.0} and joined.label == 1.0
    assert join.add_label("b", "m", 0.0, T, now=2) is None
    joined = join.add_features("b", "m", {"x": 2.0}, now=3)
    assert joined is not None and joined.label == 0.0 and joined.label_time == T
    assert join.counters.joined == 2 and len(join) == 0


def test_bounds_and_expiry() -> None:
    join = LabelJoin(max_entries=2, ttl=100, max_early_labels=1, early_label_ttl=5)
    for i in range(3):
        join.add_features(f"f{i}", "m", {}, now=0)
    assert len(join) == 2 and join.counters.evicted == 1
    join.expire(now=101)
    assert len(join) == 0 and join.counters.expired == 2
    join.add_label("l1", "m", 1.0, T, now=200)
    join.add_label("l2", "m", 1.0, T, now=200)
    assert join.counters.early_labels_evicted == 1
    assert join.add_features("l2", "m", {}, now=206) is None  # its label expired at 205
    assert join.counters.early_labels_expired == 1


def test_redelivered_events_are_not_joined_twice() -> None:
    join = LabelJoin()
    join.add_features("a", "m", {}, now=0)
    assert join.add_label("a", "m", 1.0, T, now=0) is not None
    assert join.add_label("a", "m", 1.0, T, now=1) is None
    assert join.add_features("a", "m", {}, now=2) is None
    assert join.counters.duplicates == 2 and join.counters.joined == 1


# A LabelJoin pickled by the release before the join was shared with the shadow pairing
# (features e1 waiting, e2 joined once and redelivered, an early label for e3), as an
# online snapshot holds it.
OLD_SNAPSHOT_JOIN = (
    "gAWV8QEAAAAAAACMFHNlcnZpY2VzLm9ubGluZS5qb2lulIwJTGFiZWxKb2lulJOUKYGUfZQojAttYXhfZW50"
    "cmllc5RLCowDdHRslEdAWQAAAAAAAIwQbWF4X2Vhcmx5X2xhYmVsc5RLBYwPZWFybHlfbGFiZWxfdHRslEdA"
    "SQAAAAAAAIwIY291bnRlcnOUaACMDEpvaW5Db3VudGVyc5STlCmBlE59lCiMBmpvaW5lZJRLAYwHZXhwaXJl"
    "ZJRLAIwHZXZpY3RlZJRLAIwUZWFybHlfbGFiZWxzX2V4cGlyZWSUSwCMFGVhcmx5X2xhYmVsc19ldmljdGVk"
    "lEsAjApkdXBsaWNhdGVzlEsBdYaUYowJX2ZlYXR1cmVzlIwLY29sbGVjdGlvbnOUjAtPcmRlcmVkRGljdJST"
    "lClSlIwCZTGURz/wAAAAAAAAjAFtlH2UjAF4lEc/8AAAAAAAAHOHlHOMBl9lYXJseZRoGClSlIwCZTOUKEdA"
    "EAAAAAAAAGgbRwAAAAAAAAAAjAhkYXRldGltZZSMCGRhdGV0aW1llJOUQwoH6gECAAAAAAAAlGgijAh0aW1l"
    "em9uZZSTlGgijAl0aW1lZGVsdGGUk5RLAEsASwCHlFKUhZRSlIaUUpR0lHOMBV9kb25llGgYKVKUjAJlMpRO"
    "c3ViLg=="
)


def test_a_join_from_an_older_snapshot_keeps_working() -> None:
    join = pickle.loads(base64.b64decode(OLD_SNAPSHOT_JOIN))
    assert isinstance(join, LabelJoin) and len(join) == 1
    assert (join.counters.joined, join.counters.duplicates) == (1, 1)
    assert join.counters.early_labels_held == 0  # a counter the old release did not have
    joined = join.add_label("e1", "m", 0.0, T, now=6)  # e1's features were waiting
    assert joined is not None and joined.features == {"x": 1.0} and joined.model == "m"
    joined = join.add_features("e3", "m", {"x": 3.0}, now=7)  # its label was early
    assert joined is not None and joined.label == 0.0
    assert joined.label_time == datetime(2026, 1, 2, tzinfo=UTC)
    assert join.add_label("e2", "m", 1.0, T, now=8) is None  # e2 still known as joined
    assert (join.counters.joined, join.counters.duplicates) == (3, 2)
    assert pickle.loads(pickle.dumps(join)).counters == join.counters
