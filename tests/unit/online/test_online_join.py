"""Feature/label join of the online service: order-independent, bounded, duplicate-proof."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

from services.online.join import LabelJoin

T = datetime(2026, 4, 1, tzinfo=UTC)


def test_features_then_label_and_label_then_features_both_join() -> None:
    join = LabelJoin(early_label_ttl=10)
    assert join.add_features("a", "m", {"x": 1.0}, now=0, event_time=T) is None
    joined = join.add_label("a", "m", 1.0, T, now=1)
    assert joined is not None and joined.features == {"x": 1.0} and joined.label == 1.0
    assert join.add_label("b", "m", 0.0, T, now=2) is None
    joined = join.add_features("b", "m", {"x": 2.0}, now=3, event_time=T)
    assert joined is not None and joined.label == 0.0 and joined.label_time == T
    assert join.counters.joined == 2 and len(join) == 0


def test_bounds_and_expiry() -> None:
    join = LabelJoin(max_entries=2, ttl=100, max_early_labels=1, early_label_ttl=5)
    for i in range(3):
        join.add_features(f"f{i}", "m", {}, now=0, event_time=T)
    assert len(join) == 2 and join.counters.evicted == 1
    join.expire(now=101)
    assert len(join) == 0 and join.counters.expired == 2
    join.add_label("l1", "m", 1.0, T, now=200)
    join.add_label("l2", "m", 1.0, T, now=200)
    assert join.counters.early_labels_evicted == 1
    # l2's label expired at 205
    assert join.add_features("l2", "m", {}, now=206, event_time=T) is None
    assert join.counters.early_labels_expired == 1


def test_redelivered_events_are_not_joined_twice() -> None:
    join = LabelJoin()
    join.add_features("a", "m", {}, now=0, event_time=T)
    assert join.add_label("a", "m", 1.0, T, now=0) is not None
    assert join.add_label("a", "m", 1.0, T, now=1) is None
    assert join.add_features("a", "m", {}, now=2, event_time=T) is None
    assert join.counters.duplicates == 2 and join.counters.joined == 1


def test_a_pickled_join_goes_on_where_it_stopped() -> None:
    # the online snapshot holds the join: waiting features keep their time, a joined event
    # stays known (a redelivery is a duplicate), an early label still joins
    join = LabelJoin()
    join.add_features("e1", "m", {"x": 1.0}, now=0, event_time=T)
    join.add_features("e2", "m", {"x": 2.0}, now=0, event_time=T)
    join.add_label("e2", "m", 1.0, T, now=1)
    join.add_label("e3", "m", 0.0, T, now=2)
    again = pickle.loads(pickle.dumps(join))
    assert again.counters == join.counters and len(again) == len(join)
    joined = again.add_label("e1", "m", 0.0, T, now=6)
    assert joined is not None and joined.features == {"x": 1.0} and joined.feature_time == T
    assert again.add_features("e3", "m", {"x": 3.0}, now=7, event_time=T) is not None
    assert again.add_label("e2", "m", 1.0, T, now=8) is None  # e2 still known as joined
    assert (again.counters.joined, again.counters.duplicates) == (3, 1)
