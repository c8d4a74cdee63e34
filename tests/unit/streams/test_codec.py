"""The strict codec: every event round-trips, every kind of bad input has its reason."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.demo.roundtrip import sample_events
from streams.codec import MAX_EVENT_BYTES, DecodeFailure, DecodeReason, decode, encode
from streams.contracts import EVENT_TYPES, FeatureEvent, LabelEvent, schema_of

EVENTS = sample_events()


@pytest.mark.parametrize("name", list(EVENTS))
def test_every_event_round_trips(name: str) -> None:
    event = EVENTS[name]
    data = encode(event)
    assert msgspec.json.decode(data)["schema"] == schema_of(type(event))
    assert decode(data, type(event)) == event


def test_every_contract_has_a_distinct_versioned_schema() -> None:
    schemas = [schema_of(t) for t in EVENT_TYPES]
    assert len(set(schemas)) == len(schemas)
    assert all(s.endswith("/1") for s in schemas)


def _label(**overrides: object) -> bytes:
    body = {"schema": "label_event/1", "event_id": "e1", "model": "fraud", "label": 1,
            "event_time": "2026-11-24T10:00:00Z"}
    body.update(overrides)
    return msgspec.json.encode({k: v for k, v in body.items() if v is not ...})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", DecodeReason.EMPTY),
        (b"{not json", DecodeReason.NOT_JSON),
        (b'{"schema": "label_event/1"', DecodeReason.NOT_JSON),
        (b"[1, 2]", DecodeReason.NOT_AN_OBJECT),
        (_label(schema=...), DecodeReason.MISSING_SCHEMA),
        (_label(schema="label_event/2"), DecodeReason.UNKNOWN_SCHEMA),
        (_label(schema="feature_event/1"), DecodeReason.UNKNOWN_SCHEMA),
        (_label(model=...), DecodeReason.MISSING_FIELD),
        (_label(label="yes"), DecodeReason.WRONG_TYPE),
        (_label(event_time="yesterday"), DecodeReason.INVALID_VALUE),
        (_label(event_time="2026-11-24T10:00:00"), DecodeReason.INVALID_VALUE),
        (_label(model="../etc"), DecodeReason.INVALID_VALUE),
        (_label(event_id=""), DecodeReason.INVALID_VALUE),
        (b'{"schema":"label_event/1","event_id":"e","model":"m","label":1e999,'
         b'"event_time":"2026-11-24T10:00:00Z"}', DecodeReason.INVALID_VALUE),
        (b'{"schema":"label_event/1","event_id":"e","model":"m","label":NaN,'
         b'"event_time":"2026-11-24T10:00:00Z"}', DecodeReason.NOT_JSON),
    ],
)
def test_bad_input_has_a_typed_reason(data: bytes, reason: DecodeReason) -> None:
    with pytest.raises(DecodeFailure) as info:
        decode(data, LabelEvent)
    assert info.value.reason is reason


def test_oversize_is_rejected_before_parsing() -> None:
    big = b"{" + b" " * MAX_EVENT_BYTES + b"}"
    with pytest.raises(DecodeFailure) as info:
        decode(big, LabelEvent)
    assert info.value.reason is DecodeReason.OVERSIZE


def test_feature_values_accept_numbers_strings_and_null_only() -> None:
    good = encode(EVENTS["features"])
    assert decode(good, FeatureEvent).features["merchant_risk_score"] is None
    bad = good.replace(b'"amount":12.5', b'"amount":[1,2]')
    with pytest.raises(DecodeFailure) as info:
        decode(bad, FeatureEvent)
    assert info.value.reason is DecodeReason.WRONG_TYPE


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_escape_as_other_errors(data: bytes) -> None:
    for event_type in EVENT_TYPES:
        try:
            decode(data, event_type)
        except DecodeFailure as failure:
            assert isinstance(failure.reason, DecodeReason)
