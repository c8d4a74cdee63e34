"""The bounded label join shared by the online learner and the shadow pairing: both
adapters keep its semantics (order-independent, bounded, duplicate-proof)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from services.labeljoin import BoundedJoin
from services.online.join import LabelJoin
from services.shadow.pairing import PairingBuffer

T = datetime(2026, 4, 1, tzinfo=UTC)


def test_event_then_label_and_label_then_event_join_once() -> None:
    join: BoundedJoin[str, int] = BoundedJoin(early_label_ttl=10)
    assert join.put_event("a", "features-a", now=0) is None
    assert join.put_label("a", 1, now=1) == ("features-a", 1)
    assert join.put_label("b", 0, now=2) is None and join.early_labels == 1
    assert join.put_event("b", "features-b", now=3) == ("features-b", 0)
    assert join.put_event("a", "again", now=4) is None  # redelivered after joining
    assert join.put_label("b", 0, now=5) is None
    c = join.counters
    assert (c.joined, c.duplicates, c.early_labels_held, len(join)) == (2, 2, 1, 0)


def test_discard_waiting_selects_by_value() -> None:
    join: BoundedJoin[int, int] = BoundedJoin()
    for i in range(5):
        join.put_event(f"e{i}", i, now=0)
    assert join.discard_waiting(lambda v: v % 2 == 0) == 3
    assert list(join.waiting()) == [1, 3]
    assert join.put_label("e0", 1, now=1) is None  # discarded: its label waits as early


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        BoundedJoin(max_entries=0)
    with pytest.raises(ValueError):
        BoundedJoin(ttl=0)


Adapter = tuple[Callable[..., Any], Callable[[Any, str, float], Any],
                Callable[[Any, str, float], Any]]
ADAPTERS: dict[str, Adapter] = {
    "online": (LabelJoin,
               lambda j, eid, now: j.add_features(eid, "m", {"x": 1.0}, now, T),
               lambda j, eid, now: j.add_label(eid, "m", 1.0, T, now)),
    "shadow": (PairingBuffer,
               lambda j, eid, now: j.add_predictions(eid, 0.7, {2: 0.8}, now),
               lambda j, eid, now: j.add_label(eid, 1.0, now)),
}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_both_services_wait_the_same_bounded_way(name: str) -> None:
    make, event, label = ADAPTERS[name]
    join = make(max_entries=2, ttl=100, max_early_labels=1, early_label_ttl=5)
    for i in range(3):
        assert event(join, f"f{i}", 0) is None
    assert len(join) == 2 and join.counters.evicted == 1  # f0, the oldest, dropped
    assert label(join, "f0", 1) is None  # evicted: its label now waits as early
    assert label(join, "f1", 1) is not None
    assert label(join, "f1", 2) is None and join.counters.duplicates == 1
    join.expire(now=101)
    assert len(join) == 0 and join.counters.expired == 1  # f2 waited too long
    assert join.counters.early_labels_expired == 1  # f0's label waited too long
    assert label(join, "x", 200) is None and label(join, "y", 200) is None
    assert join.counters.early_labels_evicted == 1  # x's: room for one early label
    assert event(join, "y", 206) is None  # its label expired at 205
    assert join.counters.early_labels_expired == 2 and join.counters.joined == 1
