"""Bad messages for the consumer fuzz tests, each with the dead-letter reason it must get.

:func:`bad_messages` draws (with hypothesis) a list of :class:`Bad` built from valid
events: random bytes, truncated JSON, JSON ``NaN``/``Infinity`` literals, numbers out of
range (``1e999``), wrong types, missing fields, unknown schema versions, over-long ids and
an over-size message. The expected reason is decided here, independently of the codec
(``test_oracle_matches_codec`` checks the two agree).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import strategies as st

from streams.codec import MAX_EVENT_BYTES, MAX_NESTING_DEPTH, encode
from streams.contracts import Event
from streams.settings import Settings

JSON_START = b'{["-0123456789tfn'
WHITESPACE = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Bad:
    """One bad message: its bytes, the dead-letter reason it must get (``None``: none, it
    must be handled), what it is, and the field path its detail must start with."""

    value: bytes
    reason: str | None
    kind: str
    path: str | None = None


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _not_json(data: bytes) -> bool:
    stripped = data.strip(WHITESPACE)
    return bool(stripped) and stripped[:1] not in [bytes([c]) for c in JSON_START]


@st.composite
def bad_message(draw: st.DrawFn, template: Event) -> Bad:
    """One bad variant of ``template`` (a valid event)."""
    doc = msgspec.to_builtins(template)
    raw = encode(template)
    kind = draw(st.sampled_from([
        "random_bytes", "empty", "truncated", "nan_literal", "overflow", "wrong_type",
        "missing_field", "unknown_schema", "long_id", "not_an_object",
    ]))
    fields = [k for k in doc if k != "schema"]
    if kind == "overflow" and not _number_fields(doc):
        kind = "long_id"  # no float field to overflow in this event type
    if kind == "random_bytes":
        data = draw(st.binary(min_size=1, max_size=300).filter(_not_json))
        return Bad(data, "not_json", kind)
    if kind == "empty":
        return Bad(b"", "empty", kind)
    if kind == "truncated":
        cut = draw(st.integers(1, len(raw) - 1))
        return Bad(raw[:cut], "not_json", kind)
    if kind == "nan_literal":
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        return Bad(_dumps({**doc, "event_id": "__X__"}).replace(b'"__X__"', literal.encode()),
                   "not_json", kind)
    if kind == "overflow":
        number = draw(st.sampled_from(["1e999", "-1e999", "1e400"]))
        field = draw(st.sampled_from(_number_fields(doc)))
        return Bad(_replace(doc, field, number), "invalid_value", kind)
    if kind == "wrong_type":
        # scalar fields here; a wrong-typed object field (``features``) has its own test:
        # test_fuzz_consumers.test_nested_wrong_type_is_classified_wrong_type
        field = draw(st.sampled_from([f for f in fields if not isinstance(doc[f], dict)]))
        value = _wrong_value(doc[field], draw)
        return Bad(_dumps({**doc, field: value}), "wrong_type", kind)
    if kind == "missing_field":
        required = [f for f in fields if f in _required(template)]
        field = draw(st.sampled_from(required))
        return Bad(_dumps({k: v for k, v in doc.items() if k != field}), "missing_field", kind)
    if kind == "unknown_schema":
        name, _ = str(doc["schema"]).split("/")
        schema = draw(st.sampled_from([f"{name}/2", f"{name}/0", "other_event/1", name]))
        return Bad(_dumps({**doc, "schema": schema}), "unknown_schema", kind)
    if kind == "long_id":
        n = draw(st.integers(257, 5000))
        return Bad(_dumps({**doc, "event_id": "i" * n}), "invalid_value", kind)
    value = draw(st.sampled_from([b"[]", b"1", b'"text"', b"null", b"true", b"[{}]"]))
    return Bad(value, "not_an_object", kind)


def _required(template: Event) -> set[str]:
    info = msgspec.inspect.type_info(type(template))
    return {f.name for f in info.fields if f.required}  # type: ignore[attr-defined]


def _number_fields(doc: dict[str, Any]) -> list[str]:
    found = [k for k, v in doc.items() if isinstance(v, float) and not isinstance(v, bool)]
    found += [f"features.{k}" for k, v in (doc.get("features") or {}).items()
              if isinstance(v, float)]
    return found


def _replace(doc: dict[str, Any], field: str, literal: str) -> bytes:
    doc = json.loads(json.dumps(doc))
    if field.startswith("features."):
        doc["features"][field.split(".", 1)[1]] = "__X__"
    else:
        doc[field] = "__X__"
    return _dumps(doc).replace(b'"__X__"', literal.encode())


def _wrong_value(current: Any, draw: st.DrawFn) -> Any:
    if isinstance(current, str):
        return draw(st.sampled_from([7, [current], {"v": current}, True]))
    if isinstance(current, list):
        return draw(st.sampled_from(["x", 3, {"a": 1}]))
    if isinstance(current, bool):
        return "yes"
    if isinstance(current, (int, float)):
        return draw(st.sampled_from(["1.0", [1.0], {"v": 1.0}]))
    return [current]


def oversize(template: Event) -> Bad:
    """A message above the codec's size limit."""
    doc = msgspec.to_builtins(template)
    return Bad(_dumps({**doc, "pad": "p" * (MAX_EVENT_BYTES + 10)}), "oversize", "oversize")


# -- poison: inputs that crashed or corrupted services, and their neighbours -------------

@dataclass(frozen=True, slots=True)
class Limits:
    """The edge's configured limits (read from the settings, not from the code checking
    them): event times in ``[time_min, time_max)``, numbers within ``magnitude``, JSON
    nesting at most ``depth`` (the event object itself is level 1), ``max_bytes``."""

    time_min: datetime
    time_max: datetime
    magnitude: float
    depth: int = MAX_NESTING_DEPTH
    max_bytes: int = MAX_EVENT_BYTES


def limits_of(settings: Settings) -> Limits:
    v = settings.validation
    return Limits(v.event_time_min, v.event_time_max, v.max_abs_value)


CONTROL = ("\n", "\r", "\x00", "\x1b", "\x7f", "\x85")
"""Control characters (Unicode category Cc: C0, DEL, C1), a trailing newline first."""


def _z(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _in_zone(at: datetime, hours: int) -> str:
    """The same instant written with a UTC offset of ``hours``."""
    return at.astimezone(timezone(timedelta(hours=hours))).isoformat()


def _nest(depth: int) -> str:
    return "[" * depth + "]" * depth


def _with(doc: dict[str, Any], field: str, literal: str) -> bytes:
    """``doc`` with ``field`` (``features.x`` for a feature) set to a raw JSON literal."""
    return _replace(doc, field, literal)


def _sized(doc: dict[str, Any], size: int) -> bytes:
    """``doc`` padded with an ignored field to exactly ``size`` bytes."""
    base = _dumps({**doc, "pad": ""})
    return _dumps({**doc, "pad": "p" * (size - len(base))})


def poison(template: Event, limits: Limits, *, boundaries: bool = True) -> list[Bad]:
    """Variants of ``template`` (a valid event) from the poison set, each with the reason
    the edge must give it (``None``: valid, must be handled). The expectations follow the
    documented contract: nesting deeper than ``limits.depth`` -> ``too_deep``; a repeated
    key takes its last value (standard JSON), which is then checked; event times must be
    timezone-aware within the range (any offset, compared as instants); every number
    finite within the magnitude; ids, names and categories without control characters;
    size up to ``limits.max_bytes`` inclusive, else ``oversize``. ``boundaries=False``
    leaves out valid variants far from the template's time (for services whose windows
    would move)."""
    doc = msgspec.to_builtins(template)
    out: list[Bad] = []
    add = out.append
    # nesting, in an ignored field and (feature events) inside a feature value
    add(Bad(_with(doc, "pad", _nest(1000)), "too_deep", "nest_1000_ignored"))
    add(Bad(_with(doc, "pad", _nest(limits.depth)), "too_deep", "nest_over_limit"))
    add(Bad(_with(doc, "pad", _nest(limits.depth - 1)), None, "nest_at_limit"))
    if isinstance(doc.get("features"), dict) and doc["features"]:
        name = next(iter(doc["features"]))
        add(Bad(_with(doc, f"features.{name}", _nest(1000)), "too_deep", "nest_1000_feature"))
    # repeated keys: the last one counts
    key, good = ("event_time", doc["event_time"]) if "event_time" in doc else (
        "event_id", doc["event_id"])
    bad_value = "2300-01-01T00:00:00Z" if key == "event_time" else "x\n"
    raw = _dumps(doc)
    pair = f'"{key}":{json.dumps(good)}'.encode()
    assert pair in raw, (pair, raw)
    add(Bad(raw.replace(pair, pair + b"," + f'"{key}":{json.dumps(bad_value)}'.encode()),
            "invalid_value", "duplicate_key_last_bad", key))
    add(Bad(raw.replace(pair, f'"{key}":{json.dumps(bad_value)},'.encode() + pair),
            None, "duplicate_key_last_good"))
    # event times
    if "event_time" in doc:
        at = datetime.fromisoformat(str(doc["event_time"]).replace("Z", "+00:00"))
        times: list[tuple[str, str | None, str]] = [
            ("2300-01-01T00:00:00Z", "invalid_value", "time_2300"),
            ("0001-01-01T00:00:00+14:00", "invalid_value", "time_year1_plus14"),
            ("9999-12-31T23:59:59-12:00", "invalid_value", "time_9999_minus12"),
            (at.replace(tzinfo=None).isoformat(), "invalid_value", "time_naive"),
            (_in_zone(at, 14), None, "time_plus14_same_instant"),
            (_in_zone(at, -12), None, "time_minus12_same_instant"),
            (_z(limits.time_max), "invalid_value", "time_at_max"),
            (_z(limits.time_min - timedelta(seconds=1)), "invalid_value", "time_before_min"),
        ]
        if boundaries:
            times += [
                (_in_zone(limits.time_min, -1), None, "time_at_min_minus01"),
                (_in_zone(limits.time_min - timedelta(minutes=30), 1), "invalid_value",
                 "time_before_min_plus01"),
                (_z(limits.time_max - timedelta(seconds=1)), None, "time_just_before_max"),
            ]
        for literal, reason, kind in times:
            add(Bad(_with(doc, "event_time", json.dumps(literal)), reason, kind,
                    "event_time" if reason else None))
    # numbers: +-1e308 everywhere, and around the magnitude
    for field in _number_fields(doc):
        for literal in ("1e308", "-1e308"):
            add(Bad(_with(doc, field, literal), "invalid_value", f"huge_{field}", field))
        add(Bad(_with(doc, field, repr(limits.magnitude * 1.5)), "invalid_value",
                f"over_magnitude_{field}", field))
        if field.startswith("features.") and boundaries:
            add(Bad(_with(doc, field, repr(limits.magnitude)), None, f"at_magnitude_{field}"))
    # control characters in ids, names and categories
    for field in _name_fields(doc):
        for char in CONTROL:
            value = _get(doc, field) + char if char == "\n" else f"a{char}b"
            add(Bad(_with(doc, field, json.dumps(value)), "invalid_value",
                    f"control_{field}_{ord(char):02x}", field))
    if isinstance(doc.get("features"), dict) and doc["features"]:
        name, value = next(iter(doc["features"].items()))
        renamed = {**doc, "features": {**{k: v for k, v in doc["features"].items()
                                          if k != name}, name + "\n": value}}
        add(Bad(_dumps(renamed), "invalid_value", "control_feature_name", "features."))
    # size
    add(Bad(_sized(doc, limits.max_bytes), None, "size_at_limit"))
    add(Bad(_sized(doc, limits.max_bytes + 1), "oversize", "size_one_over"))
    return out


def _name_fields(doc: dict[str, Any]) -> list[str]:
    """String fields that are ids, names or categories (not the schema tag or prose)."""
    names = [k for k, v in doc.items() if isinstance(v, str) and k not in (
        "schema", "event_time", "reason", "requested_at", "window_start", "window_end")]
    names += [f"features.{k}" for k, v in (doc.get("features") or {}).items()
              if isinstance(v, str)]
    return names


def _get(doc: dict[str, Any], field: str) -> str:
    if field.startswith("features."):
        return str(doc["features"][field.split(".", 1)[1]])
    return str(doc[field])
