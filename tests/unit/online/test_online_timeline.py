"""The event-time record that maps "the change began N learned events back" to a time.

Bugs caught: a ring index off by one (the time of a neighbour, not of the event asked
for); rounding down (a time before the change: pre-change data in the fresh window);
an unbounded record; a restored older state or a fresh learner mixing two lineages'
counts; a snapshot's state or join losing a pending event's feature time.
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from services.featurespec import FeatureSpec, ModelSpec
from services.online.join import LabelJoin
from services.online.learner import OnlineLearner
from services.online.state import OnlineState
from services.online.timeline import EventTimeline

T0 = datetime(2026, 4, 1, tzinfo=UTC)


def _at(i: int) -> datetime:
    return T0 + timedelta(seconds=i)


def test_times_are_rounded_up_to_a_kept_event_and_bounded() -> None:
    line = EventTimeline(every=4, capacity=100)
    for n in range(1, 1001):
        line.record(n, _at(n))
    assert len(line) == 100  # bounded: events 604..1000, one in 4
    assert line.time_of(1000) == _at(1000)
    assert line.time_of(997) == _at(1000)
    assert line.time_of(996) == _at(996)
    assert line.time_of(605) == _at(608)
    assert line.time_of(5) == _at(604)  # older than kept: the oldest (later) time
    assert line.time_of(1001) is None  # newer than kept: the caller's own event


def test_before_the_ring_fills() -> None:
    line = EventTimeline(every=1, capacity=10)
    for n in range(1, 6):
        line.record(n, _at(n))
    assert [line.time_of(n) for n in range(1, 6)] == [_at(n) for n in range(1, 6)]
    assert EventTimeline().time_of(3) is None


def test_a_count_that_goes_back_or_skips_starts_over() -> None:
    line = EventTimeline(every=1, capacity=10)
    for n in range(1, 6):
        line.record(n, _at(n))
    line.record(2, _at(100))  # a fresh learner
    assert len(line) == 1 and line.time_of(1) == _at(100)
    line.record(7, _at(200))  # a gap
    assert len(line) == 1 and line.time_of(2) == _at(200)


def test_record_survives_pickling() -> None:
    line = EventTimeline(every=2, capacity=8)
    for n in range(1, 40):
        line.record(n, _at(n))
    again = pickle.loads(pickle.dumps(line))
    assert [again.time_of(n) for n in range(20, 40)] == [line.time_of(n) for n in range(20, 40)]


def test_a_restored_state_keeps_its_timelines_and_its_pending_feature_times() -> None:
    spec = ModelSpec("m", "id", (FeatureSpec("x", "numeric"),))
    join = LabelJoin()
    join.add_features("e1", "m", {"x": 1.0}, 0.0, _at(5))
    state = OnlineState(learners={"m": OnlineLearner(spec)}, join=join)
    for n in range(1, 9):
        state.timeline("m").record(n, _at(n))
    again = pickle.loads(pickle.dumps(state))
    assert again.timeline("m").time_of(4) == _at(4)
    new = again.join.add_label("e1", "m", 0.0, _at(9), 0.0)
    assert new is not None and new.event_time == _at(5)  # the features' time
