"""Strict JSON encoding and decoding of the event contracts.

``decode`` either returns a fully validated event of the requested type or raises
:class:`DecodeFailure` whose ``reason`` is one of :class:`DecodeReason`: the reason
travels to the dead-letter topic so an operator can tell garbage from a producer
that speaks a newer schema.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

import msgspec

from streams.contracts import Event, schema_of

E = TypeVar("E", bound=Event)

MAX_EVENT_BYTES = 1_000_000
"""Largest accepted event; anything bigger is dead-lettered as ``oversize``."""


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


def decode(data: bytes | None, event_type: type[E], *, max_bytes: int = MAX_EVENT_BYTES) -> E:
    """Decode ``data`` strictly as ``event_type`` or raise :class:`DecodeFailure`."""
    if not data:
        raise DecodeFailure(DecodeReason.EMPTY, "message has no value")
    if len(data) > max_bytes:
        raise DecodeFailure(
            DecodeReason.OVERSIZE, f"{len(data)} bytes exceeds the {max_bytes}-byte limit"
        )
    try:
        event = _decoder_for(event_type).decode(data)
    except msgspec.ValidationError as exc:
        raise _classify_validation(str(exc), data, event_type) from None
    except msgspec.DecodeError as exc:
        raise DecodeFailure(DecodeReason.NOT_JSON, str(exc)) from None
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
    return DecodeFailure(DecodeReason.INVALID_VALUE, message)

