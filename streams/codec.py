"""Strict JSON encoding and decoding of the event contracts.

``decode`` either returns a fully validated event of the requested type or raises
:class:`DecodeFailure` whose ``reason`` is one of :class:`DecodeReason`: the reason
travels to the dead-letter topic so an operator can tell garbage from a producer
that speaks a newer schema.
"""

from __future__ import annotations

import enum
import re
from typing import Any, TypeVar

import msgspec

from streams.contracts import Event, schema_of

E = TypeVar("E", bound=Event)

MAX_EVENT_BYTES = 1_000_000
"""Largest accepted event; anything bigger is dead-lettered as ``oversize``."""
MAX_NESTING_DEPTH = 64
"""Deepest accepted JSON nesting of arrays and objects (in any field, ignored ones too);
deeper is dead-lettered as ``too_deep`` before parsing (the parser would recurse)."""

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class DecodeReason(enum.StrEnum):
    """Why a message could not become an event."""

    EMPTY = "empty"
    OVERSIZE = "oversize"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_SCHEMA = "missing_schema"
    UNKNOWN_SCHEMA = "unknown_schema"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    TOO_DEEP = "too_deep"
    DECODE_ERROR = "decode_error"


class DecodeFailure(Exception):
    """A message that is not a valid event of the expected type."""

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


def encode(event: Event) -> bytes:
    """Serialise an event to compact UTF-8 JSON (the ``schema`` tag included)."""
    return _encoder.encode(event)


def _decoder_for(event_type: type[E]) -> msgspec.json.Decoder[E]:
    decoder = _decoders.get(event_type)
    if decoder is None:
        decoder = msgspec.json.Decoder(event_type)
        _decoders[event_type] = decoder
    return decoder


def may_be_too_deep(data: bytes, limit: int = MAX_NESTING_DEPTH) -> bool:
    """Cheap pre-check: fewer opening brackets than ``limit`` cannot nest deeper."""
    return data.count(b"[") + data.count(b"{") > limit


def nesting_depth(data: bytes) -> int:
    """Deepest nesting of arrays/objects in ``data``, brackets inside strings ignored.

    Linear in the input; no recursion, so any depth is measured safely.
    """
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', data)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def decode(data: bytes | None, event_type: type[E], *, max_bytes: int = MAX_EVENT_BYTES) -> E:
    """Decode ``data`` strictly as ``event_type`` or raise :class:`DecodeFailure`.

    Never raises anything else: an unexpected exception from the parser becomes
    ``decode_error`` with the exception type in the detail.
    """
    if not data:
        raise DecodeFailure(DecodeReason.EMPTY, "message has no value")
    if len(data) > max_bytes:
        raise DecodeFailure(
            DecodeReason.OVERSIZE, f"{len(data)} bytes exceeds the {max_bytes}-byte limit"
        )
    if may_be_too_deep(data):
        depth = nesting_depth(data)
        if depth > MAX_NESTING_DEPTH:
            raise DecodeFailure(
                DecodeReason.TOO_DEEP,
                f"JSON nesting depth {depth} exceeds the limit of {MAX_NESTING_DEPTH}",
            )
    try:
        event = _decoder_for(event_type).decode(data)
    except msgspec.ValidationError as exc:
        raise _classify_validation(str(exc), data, event_type) from None
    except msgspec.DecodeError as exc:
        raise DecodeFailure(DecodeReason.NOT_JSON, str(exc)) from None
    except Exception as exc:  # RecursionError, MemoryError from a hostile input...
        raise DecodeFailure(
            DecodeReason.DECODE_ERROR, f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    # msgspec accepts a tagged struct without its tag; the contract requires it.
    if b'"schema"' not in data:
        raise DecodeFailure(DecodeReason.MISSING_SCHEMA, "no `schema` field")
    return event


def _classify_validation(message: str, data: bytes, event_type: type[Event]) -> DecodeFailure:
    if message.startswith("Expected `object`") and " - at `$" not in message:
        return DecodeFailure(DecodeReason.NOT_AN_OBJECT, message)
    if "at `$.schema`" in message:
        return DecodeFailure(
            DecodeReason.UNKNOWN_SCHEMA, f"{message}; expected {schema_of(event_type)!r}"
        )
    if "missing required field" in message:
        if b'"schema"' not in data:
            return DecodeFailure(DecodeReason.MISSING_SCHEMA, "no `schema` field")
        return DecodeFailure(DecodeReason.MISSING_FIELD, message)
    if message.startswith("Expected") and ", got `" in message:
        return DecodeFailure(DecodeReason.WRONG_TYPE, message)
    head, sep, where = message.partition(" - at `$.")
    if sep:  # lead with the field path, like the edge validation's details
        return DecodeFailure(DecodeReason.INVALID_VALUE, f"{where.rstrip('`')}: {head}")
    return DecodeFailure(DecodeReason.INVALID_VALUE, message)

