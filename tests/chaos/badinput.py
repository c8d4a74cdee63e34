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
from typing import Any

import msgspec
from hypothesis import strategies as st

from streams.codec import MAX_EVENT_BYTES, encode
from streams.contracts import Event

JSON_START = b'{["-0123456789tfn'
WHITESPACE = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Bad:
    """One bad message: its bytes, the dead-letter reason it must get, what it is."""

    value: bytes
    reason: str
    kind: str


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
