"""Ingest core: validation rejects, label joins, batching and commit offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import numpy as np
import pytest

from services.features.feast_repo import ModelLayout
from services.features.generate import Generator, GeneratorConfig
from services.features.ingest import (
    IngestBuffer,
    OffsetTracker,
    Reject,
    validate_feature_event,
)
from streams.contracts import FeatureEvent, LabelEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _pairs(n: int) -> list[tuple[FeatureEvent, LabelEvent]]:
    return list(Generator(GeneratorConfig(seed=11)).live(T0, n))


def _with(event: FeatureEvent, **changes: object) -> FeatureEvent:
    features = dict(event.features)
    for k, v in changes.items():
        if v is KeyError:
            del features[k]
        else:
            features[k] = v  # type: ignore[assignment]
    return FeatureEvent(
        event_id=event.event_id,
        model=event.model,
        entity_id=event.entity_id,
        event_time=event.event_time,
        features=features,
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"bogus": 1.0}, "unknown_feature"),
        ({"amount": KeyError}, "missing_feature"),
        ({"amount": "12"}, "wrong_type"),
        ({"channel": 3.0}, "wrong_type"),
        ({"amount": float("inf")}, "non_finite"),
        ({"amount": float("nan"), "txn_count_1h": 0.0}, "non_finite"),  # 0.0: not summed
        ({"amount": True}, "wrong_type"),
        ({"channel": None, "country": 7}, "wrong_type"),
    ],
)
def test_invalid_features_are_rejected_with_a_reason(
    layout: ModelLayout, change: dict[str, object], reason: str
) -> None:
    fe, _ = _pairs(1)[0]
    bad = _with(fe, **change)
    buffer = IngestBuffer({"fraud": layout})
    reject = buffer.add_features(bad)
    assert reject is not None and reject.reason == reason
    assert validate_feature_event(bad, {"fraud": layout}) == reject
    assert buffer.rows == 0


def test_unknown_model_and_nulls(layout: ModelLayout) -> None:
    fe, _ = _pairs(1)[0]
    buffer = IngestBuffer({"fraud": layout})
    other = FeatureEvent(
        event_id="x", model="other", entity_id="c", event_time=T0, features=fe.features
    )
    assert buffer.add_features(other).reason == "unknown_model"  # type: ignore[union-attr]
    lbl = LabelEvent(event_id="x", model="other", label=1.0, event_time=T0)
    assert buffer.add_label(lbl).reason == "unknown_model"  # type: ignore[union-attr]
    assert buffer.add_features(_with(fe, amount=None, channel=None)) is None


def test_take_gives_one_frame_per_push_source_with_every_column(layout: ModelLayout) -> None:
    pairs = _pairs(50)
    buffer = IngestBuffer({"fraud": layout})
    for fe, le in pairs:
        assert buffer.add_features(fe) is None
        assert buffer.add_label(le) is None
    batches = {b.push_source: b for b in buffer.take(created=T0)}
    assert buffer.rows == 0 and buffer.take() == []
    assert set(batches) == {"fraud_transaction_push", "fraud_card_push", "fraud_labels_push"}
    for view in (*layout.views, layout.labels):
        frame = batches[view.push_source].frame
        assert tuple(frame.columns) == view.columns
        assert len(frame) == 50
        assert frame["event_timestamp"].is_monotonic_increasing
        assert (frame["created"] == T0).all()
    assert batches["fraud_labels_push"].online is None
    assert batches["fraud_transaction_push"].online is None
    card = batches["fraud_card_push"].frame
    assert card["card_id"].tolist() == [fe.entity_id for fe, _ in pairs]
    # Online gets the newest row of each card only.
    online = batches["fraud_card_push"].online
    assert online is not None and online["card_id"].is_unique
    newest = {fe.entity_id: fe.features["account_balance"] for fe, _ in pairs}
    assert dict(zip(online["card_id"], online["account_balance"], strict=True)) == newest
    assert card["account_balance"].dtype == np.float64
    labels = batches["fraud_labels_push"].frame
    # A label row carries its feature event's time and entity, and its own time.
    assert labels["event_timestamp"].tolist() == [fe.event_time for fe, _ in pairs]
    assert labels["label_time"].tolist() == [le.event_time for _, le in pairs]
    assert labels["card_id"].tolist() == [fe.entity_id for fe, _ in pairs]


def test_every_view_gets_each_events_own_values_under_the_right_names(
    layout: ModelLayout,
) -> None:
    # the columns are read out of all events at once: a shifted name or row shows here
    events = [fe for fe, _ in _pairs(30)]
    events[3] = _with(events[3], amount=None, channel=None, txn_count_1h=None)
    buffer = IngestBuffer({"fraud": layout})
    for fe in events:
        assert buffer.add_features(fe) is None
    frames = {b.view: b.frame for b in buffer.take(created=T0)}
    for view in layout.views:
        frame = frames[view.name]
        keys = {layout.event_key: [fe.event_id for fe in events],
                layout.spec.entity: [fe.entity_id for fe in events]}
        for key in view.join_keys:  # the rows in the events' order
            assert frame[key].tolist() == keys[key]
        for name in view.features:
            got = [None if isinstance(v, float) and np.isnan(v) else v for v in frame[name]]
            assert got == [fe.features[name] for fe in events], name


def test_unknown_names_the_labels_whose_features_are_not_in_memory(
    layout: ModelLayout,
) -> None:
    (fe, _), (other, _) = _pairs(2)
    buffer = IngestBuffer({"fraud": layout})
    assert buffer.add_features(fe) is None
    assert buffer.unknown([fe.event_id, other.event_id, "x"]) == {other.event_id, "x"}


def test_label_before_features_waits_then_joins(layout: ModelLayout) -> None:
    ((fe, le),) = _pairs(1)
    buffer = IngestBuffer({"fraud": layout})
    assert buffer.add_label(le) == "pending"
    assert buffer.is_pending(le.event_id) and buffer.pending_labels == 1
    assert buffer.add_features(fe) is None
    assert not buffer.is_pending(le.event_id)
    assert buffer.drain_joined() == [le.event_id] and buffer.drain_joined() == []
    labels = {b.view: b.frame for b in buffer.take()}["fraud_labels"]
    assert labels["event_id"].tolist() == [fe.event_id]


def test_unmatched_labels_expire_or_are_pushed_out(layout: ModelLayout) -> None:
    pairs = _pairs(5)
    buffer = IngestBuffer({"fraud": layout}, max_pending=2, label_wait=timedelta(seconds=60))
    for _, le in pairs[:3]:
        assert buffer.add_label(le) == "pending"
    expired = buffer.expired()
    assert [(e.event_id, r.reason) for e, r in expired] == [
        (pairs[0][1].event_id, "label_unmatched")
    ]
    late_fe = pairs[4][0]
    late = FeatureEvent(
        event_id=late_fe.event_id,
        model="fraud",
        entity_id="c",
        event_time=max(le.event_time for _, le in pairs) + timedelta(hours=1),
        features=late_fe.features,
    )
    buffer.add_features(late)
    assert {e.event_id for e, _ in buffer.expired()} == {p[1].event_id for p in pairs[1:3]}
    assert buffer.pending_labels == 0


def test_offset_tracker_holds_back_until_released() -> None:
    tracker = OffsetTracker()
    key = ("features", 0)
    for offset in range(10):
        tracker.seen(key, offset)
    assert tracker.plan() == {key: 10}
    tracker.hold(key, 3)
    tracker.hold(key, 7)
    assert tracker.plan() == {key: 3}
    tracker.release(key, [3])
    assert tracker.plan() == {key: 7}
    tracker.release(key, [7])
    assert tracker.plan() == {key: 10}


def test_a_label_finds_features_pushed_before_a_restart_through_the_lookup(
    layout: ModelLayout,
) -> None:
    ((fe, le),) = _pairs(1)
    known = {fe.event_id: ("card-from-index", fe.event_time)}
    buffer = IngestBuffer({"fraud": layout}, lookup=known.get)  # a fresh process
    assert buffer.add_label(le) is None  # joined at once, not pending
    labels = {b.view: b.frame for b in buffer.take()}["fraud_labels"]
    assert labels["card_id"].tolist() == ["card-from-index"]
    assert labels["event_timestamp"].tolist() == [fe.event_time]
    other = LabelEvent(event_id="never-seen", model="fraud", label=0.0, event_time=T0)
    assert buffer.add_label(other) == "pending"


def test_a_repeated_label_waits_beside_the_first_and_both_join(layout: ModelLayout) -> None:
    ((fe, le),) = _pairs(1)
    buffer = IngestBuffer({"fraud": layout})
    assert buffer.add_label(le) == "pending"
    assert buffer.add_label(le) == "pending"
    assert buffer.pending_labels == 2
    assert buffer.add_features(fe) is None
    assert buffer.drain_joined() == [fe.event_id] and buffer.pending_labels == 0
    labels = {b.view: b.frame for b in buffer.take()}["fraud_labels"]
    assert labels["event_id"].tolist() == [fe.event_id, fe.event_id]


def test_repeated_labels_that_never_match_are_all_given_up(layout: ModelLayout) -> None:
    pairs = _pairs(2)
    buffer = IngestBuffer({"fraud": layout}, label_wait=timedelta(seconds=1))
    orphan = LabelEvent(event_id="never", model="fraud", label=1.0,
                        event_time=T0 - timedelta(hours=1))
    assert buffer.add_label(orphan) == "pending" and buffer.add_label(orphan) == "pending"
    buffer.add_features(pairs[1][0])
    expired = buffer.expired()
    assert [(e.event_id, r.reason) for e, r in expired] == [("never", "label_unmatched")] * 2


def test_event_times_of_any_year_become_a_utc_index_without_overflow() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from services.features.ingest import utc_microseconds

    index = utc_microseconds([
        datetime(2300, 1, 1, tzinfo=UTC),  # past pandas' nanosecond range (2262)
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),  # year 0 in UTC
        datetime(2026, 1, 1, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=2))),
    ])
    assert str(index.dtype) == "datetime64[us, UTC]"
    assert index[0].year == 2300
    assert index.asi8[1] == -62_135_647_200 * 1_000_000  # 0001-01-01 minus 14 h, in µs
    assert index[2].isoformat() == "2025-12-31T23:02:03.000004+00:00"


def test_times_the_stores_cannot_hold_are_rejected_not_buffered() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from services.features.ingest import check_time

    assert check_time(datetime(2026, 3, 1, tzinfo=UTC)) is None
    for odd in (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
                datetime(2300, 1, 1, tzinfo=UTC), datetime(1677, 6, 1, tzinfo=UTC)):
        reject = check_time(odd)
        assert reject is not None and reject.reason == "invalid_time", odd


def test_a_feature_event_or_label_at_a_year_0_utc_time_is_rejected_by_the_buffer(
    layout: ModelLayout,
) -> None:
    fe, label = _pairs(1)[0]
    far = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    buffer = IngestBuffer({"fraud": layout})
    reject = buffer.add_features(msgspec.structs.replace(fe, event_time=far))
    assert reject is not None and reject.reason == "invalid_time"
    late = buffer.add_label(msgspec.structs.replace(label, event_time=far))
    assert isinstance(late, Reject) and late.reason == "invalid_time"
    assert buffer.rows == 0 and buffer.pending_labels == 0
