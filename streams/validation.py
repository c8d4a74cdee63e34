"""Semantic checks at the contract edge: ranges, not only types.

:func:`validate` runs right after a message decoded into an event. It raises
:class:`~streams.codec.DecodeFailure` (``invalid_value``) whose detail starts with the
field path, e.g. ``event_time: 2300-01-01 00:00:00+00:00 outside [2000-01-01, 2100-01-01)``,
``features.amount: 1e+308 exceeds magnitude 1e+12`` or ``entity_id: contains a control
character``. The rules, the same for every event type:

- every datetime is timezone-aware and within the configured range (converting a far
  date to UTC is never attempted, so ``0001-01-01T00:00:00+14:00`` is refused, not a crash);
- every float is finite; feature values and labels (client data) also within the
  configured magnitude;
- every string that is an id, a name or a category, and every mapping key, has no control
  character (C0, DEL or C1). Checked with ``search`` over the whole string, so a trailing
  newline cannot hide behind a ``$``.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import msgspec

from streams.codec import DecodeFailure, DecodeReason
from streams.contracts import Event, FeatureEvent, LabelEvent
from streams.settings import ValidationSettings

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
FREE_TEXT_FIELDS = frozenset({"reason"})
"""String fields that are prose, not names (a shadow verdict's ``reason``)."""
_BOUNDED_FIELDS = frozenset({"label"})
"""Float fields of client data held to the magnitude limit (besides feature values)."""


def _fail(path: str, problem: str) -> DecodeFailure:
    return DecodeFailure(DecodeReason.INVALID_VALUE, f"{path}: {problem}")


def _check_time(path: str, value: datetime, limits: ValidationSettings) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise _fail(path, f"{value.isoformat()} has no timezone")
    if not limits.event_time_min <= value < limits.event_time_max:
        raise _fail(
            path,
            f"{value.isoformat()} outside [{limits.event_time_min.date()}, "
            f"{limits.event_time_max.date()})",
        )


def _check_float(path: str, value: float, limits: ValidationSettings, bounded: bool) -> None:
    if not math.isfinite(value):
        raise _fail(path, f"{value!r} is not finite")
    if bounded and abs(value) > limits.max_abs_value:
        raise _fail(path, f"{value:g} exceeds magnitude {limits.max_abs_value:g}")


def _no_control(text: str) -> bool:
    """Whether ``text`` has no control character. ``isprintable`` (C, several times
    faster than the search) is false for every control character, so only a text it
    refuses (a tab, a non-breaking space…) needs the search."""
    return text.isprintable() or CONTROL_CHARACTERS.search(text) is None


def _check_name(path: str, value: str) -> None:
    if not _no_control(value):
        raise _fail(path, "contains a control character")


def _check_feature_event(event: FeatureEvent, limits: ValidationSettings) -> None:
    """The hot path: one control-character check over every id, name and category,
    C-level passes over the numbers; the per-field walk runs only to name the offender
    of a failed check."""
    features = event.features
    values = features.values()
    numbers = [v for v in values if v.__class__ is float]
    texts = [v for v in values if v.__class__ is str]
    bound = limits.max_abs_value
    time = event.event_time
    if (
        _no_control("".join((event.event_id, event.model, event.entity_id, *features, *texts)))
        and (not numbers or (-bound <= min(numbers) and max(numbers) <= bound
                             and math.isfinite(sum(numbers))))
        and time.tzinfo is not None
        and limits.event_time_min <= time < limits.event_time_max
    ):
        return
    _check_name("event_id", event.event_id)
    _check_name("model", event.model)
    _check_name("entity_id", event.entity_id)
    _check_time("event_time", time, limits)
    for name, value in features.items():
        _check_name(f"features.{name!r}", name)
        if type(value) is float:
            _check_float(f"features.{name}", value, limits, bounded=True)
        elif type(value) is str:
            _check_name(f"features.{name}", value)


def _check_value(path: str, field: str, value: Any, limits: ValidationSettings) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return
    if isinstance(value, float):
        _check_float(path, value, limits, bounded=field in _BOUNDED_FIELDS)
    elif isinstance(value, str):
        if field not in FREE_TEXT_FIELDS:
            _check_name(path, value)
    elif isinstance(value, datetime):
        _check_time(path, value, limits)
    elif isinstance(value, msgspec.Struct):
        _check_struct(path + ".", value, limits)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                _check_name(f"{path}.{key!r}", key)
            _check_value(f"{path}.{key}", field, item, limits)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_value(f"{path}[{i}]", field, item, limits)


def _check_struct(prefix: str, struct: msgspec.Struct, limits: ValidationSettings) -> None:
    for field in struct.__struct_fields__:
        _check_value(prefix + field, field, getattr(struct, field), limits)


def validate(event: Event, limits: ValidationSettings) -> None:
    """Raise ``DecodeFailure(invalid_value, "<field path>: <problem>")`` if out of range."""
    if type(event) is FeatureEvent:
        _check_feature_event(event, limits)
    elif type(event) is LabelEvent:
        time, label, bound = event.event_time, event.label, limits.max_abs_value
        if (  # the hot path in one go; the checks below name the offender
            _no_control(event.event_id + event.model)
            and time.tzinfo is not None
            and limits.event_time_min <= time < limits.event_time_max
            and -bound <= label <= bound  # NaN and infinities fail here
        ):
            return
        _check_name("event_id", event.event_id)
        _check_name("model", event.model)
        _check_time("event_time", event.event_time, limits)
        _check_float("label", event.label, limits, bounded=True)
    else:
        _check_struct("", event, limits)
