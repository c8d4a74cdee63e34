"""Edge validation: ranges, finiteness, control characters, and the nesting limit."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from streams.codec import MAX_NESTING_DEPTH, DecodeFailure, DecodeReason, decode, nesting_depth
from streams.contracts import (
    FeatureEvent,
    LabelEvent,
    ModelCandidate,
    RetrainRequest,
)
from streams.settings import ValidationSettings
from streams.validation import validate

LIMITS = ValidationSettings()


def _feature(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "schema": "feature_event/1", "event_id": "e1", "model": "fraud", "entity_id": "c1",
        "event_time": "2026-11-24T10:00:00Z", "features": {"amount": 12.5, "country": "FR"},
    }
    body.update(overrides)
    return msgspec.json.encode(body)


def _label(**overrides: object) -> bytes:
    body: dict[str, object] = {"schema": "label_event/1", "event_id": "e1", "model": "fraud",
                               "label": 1.0, "event_time": "2026-11-24T10:00:00Z"}
    body.update(overrides)
    return msgspec.json.encode(body)


def _check(data: bytes, event_type: type) -> DecodeFailure:
    with pytest.raises(DecodeFailure) as info:
        validate(decode(data, event_type), LIMITS)
    return info.value


@pytest.mark.parametrize(
    ("data", "event_type", "detail"),
    [
        (_feature(event_time="2300-01-01T00:00:00Z"), FeatureEvent, "event_time: 2300-01-01"),
        (_feature(event_time="0001-01-01T00:00:00+14:00"), FeatureEvent, "event_time: 0001-01-01"),
        (_feature(event_time="2100-01-01T00:00:00Z"), FeatureEvent, "event_time: 2100-01-01"),
        (_feature(event_time="1999-12-31T23:59:59Z"), FeatureEvent, "event_time: 1999-12-31"),
        (_feature(features={"amount": 1e308}), FeatureEvent, "features.amount: 1e+308 exceeds"),
        (_feature(features={"amount": -1e13}), FeatureEvent, "features.amount: -1e+13 exceeds"),
        (_feature(entity_id="c1\n"), FeatureEvent, "entity_id: contains a control character"),
        (_feature(event_id="e\x001"), FeatureEvent, "event_id: contains a control character"),
        (_feature(features={"amount\n": 1.0}), FeatureEvent, "features.'amount\\n': contains"),
        (_feature(features={"country": "FR\r"}), FeatureEvent, "features.country: contains"),
        (_feature(features={"country": "FR\x85"}), FeatureEvent, "features.country: contains"),
        (_label(label=-1e308), LabelEvent, "label: -1e+308 exceeds"),
        (_label(event_time="2300-01-01T00:00:00Z"), LabelEvent, "event_time: 2300-01-01"),
        (_label(event_id="e1\t"), LabelEvent, "event_id: contains a control character"),
    ],
)
def test_out_of_range_values_are_invalid_with_the_field_named(
    data: bytes, event_type: type, detail: str
) -> None:
    failure = _check(data, event_type)
    assert failure.reason is DecodeReason.INVALID_VALUE
    assert failure.detail.startswith(detail), failure.detail


def test_a_trailing_newline_in_a_model_name_is_refused_by_the_contract() -> None:
    # A `$` in the pattern would match before the newline and accept "fraud\n".
    with pytest.raises(DecodeFailure) as info:
        decode(_label(model="fraud\n"), LabelEvent)
    assert info.value.reason is DecodeReason.INVALID_VALUE
    assert info.value.detail.startswith("model: ")


@pytest.mark.parametrize(
    "data",
    [
        _feature(),
        _feature(event_time="2000-01-01T00:00:00Z"),
        _feature(event_time="2099-12-31T18:59:59-05:00", features={"amount": -1e12, "x": None}),
        _label(label=1e12),
        # not printable, yet no control character: the search decides, not isprintable
        _feature(entity_id="c\u00a01", features={"country": "F\u2028R", "x": 1.0}),
        _label(event_id="e\u00ad1"),
    ],
)
def test_values_at_the_limits_are_valid(data: bytes) -> None:
    event_type = FeatureEvent if b"feature_event" in data else LabelEvent
    validate(decode(data, event_type), LIMITS)


def test_every_event_type_is_checked_field_by_field() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    request = RetrainRequest(
        event_id="r", request_id="req\n", model="fraud", reason="manual", base_version=1,
        window_start=now, window_end=now, requested_at=now,
    )
    with pytest.raises(DecodeFailure, match="request_id: contains a control character"):
        validate(request, LIMITS)
    late = RetrainRequest(
        event_id="r", request_id="req", model="fraud", reason="manual", base_version=1,
        window_start=now, window_end=datetime(2200, 1, 1, tzinfo=UTC), requested_at=now,
    )
    with pytest.raises(DecodeFailure, match="window_end: 2200-01-01"):
        validate(late, LIMITS)
    candidate = ModelCandidate(event_id="c", model="fraud", version=2, parent_version=1,
                               request_id=None, registry_uri="reg/fraud/2", sha256="0" * 64)
    validate(candidate, LIMITS)


def test_the_time_range_is_configurable() -> None:
    narrow = ValidationSettings(event_time_min=datetime(2026, 1, 1, tzinfo=UTC))
    event = decode(_feature(event_time="2025-06-01T00:00:00Z"), FeatureEvent)
    validate(event, LIMITS)
    with pytest.raises(DecodeFailure, match="event_time: 2025-06-01"):
        validate(event, narrow)


def test_deep_nesting_is_too_deep_before_parsing() -> None:
    deep = _label()[:-1] + b',"ignored":' + b"[" * 1000 + b"]" * 1000 + b"}"
    with pytest.raises(DecodeFailure) as info:
        decode(deep, LabelEvent)
    assert info.value.reason is DecodeReason.TOO_DEEP
    assert "1001" in info.value.detail


def test_nesting_at_the_limit_decodes_and_brackets_in_strings_do_not_count() -> None:
    # The root object is level 1: MAX_NESTING_DEPTH - 1 arrays inside it reach the limit.
    inner = MAX_NESTING_DEPTH - 1
    at_limit = _label()[:-1] + b',"x":' + b"[" * inner + b"]" * inner + b"}"
    assert nesting_depth(at_limit) == MAX_NESTING_DEPTH
    decode(at_limit, LabelEvent)
    over = _label()[:-1] + b',"x":' + b"[" * (inner + 1) + b"]" * (inner + 1) + b"}"
    with pytest.raises(DecodeFailure, match="too_deep"):
        decode(over, LabelEvent)
    brackets_in_text = _label(event_id="[" * 200 + '\\"{' * 10)
    assert nesting_depth(brackets_in_text) == 1
    decode(brackets_in_text, LabelEvent)


def test_an_unexpected_parser_exception_is_a_decode_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.codec as codec

    class Exploding:
        def decode(self, data: bytes) -> object:
            raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setitem(codec._decoders, LabelEvent, Exploding())
    with pytest.raises(DecodeFailure) as info:
        decode(_label(), LabelEvent)
    assert info.value.reason is DecodeReason.DECODE_ERROR
    assert info.value.detail.startswith("RecursionError")
