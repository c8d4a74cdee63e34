"""libFuzzer target over the contract edge: every input, decoded as every event type and
then checked by the semantic validation, either becomes an event or raises
:class:`~streams.codec.DecodeFailure` with a known reason (what the consumer loop
dead-letters). Anything else (``RecursionError``, ``ValueError``
from a date, an ``OverflowError``) is a crash: atheris prints the input and exits non-zero.

Run: ``python -m chaos.fuzz.codec_target -runs=N -seed=S [corpus dirs]`` (``PYTHONPATH``
holding the repository root and ``tests``). The seed corpus (``--write-seeds DIR``) is one
valid event of each type, so mutations reach the typed and semantic checks quickly.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["streams"]):
    from streams.codec import DecodeFailure, DecodeReason, decode, encode
    from streams.contracts import EVENT_TYPES, Event, FeatureEvent, LabelEvent, RetrainRequest
    from streams.settings import ValidationSettings
    from streams.validation import validate

LIMITS = ValidationSettings()

REASONS = {reason.value for reason in DecodeReason} | {"too_deep", "decode_error"}
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def seeds() -> list[Event]:
    """One valid event per input type the services read from clients."""
    return [
        FeatureEvent(event_id="e1", model="fraud", entity_id="c1", event_time=T0,
                     features={"amount": 12.5, "channel": "pos", "n": None}),
        LabelEvent(event_id="e1", model="fraud", label=1.0, event_time=T0),
        RetrainRequest(event_id="r", request_id="q", model="fraud", reason="manual",
                       base_version=1, window_start=T0, window_end=T0, requested_at=T0),
    ]


def one_input(data: bytes) -> None:
    for event_type in EVENT_TYPES:
        try:
            validate(decode(data, event_type), LIMITS)
        except DecodeFailure as failure:
            if failure.reason.value not in REASONS:
                raise AssertionError(f"unknown reason {failure.reason!r}") from None


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--write-seeds":
        out = Path(argv[2])
        out.mkdir(parents=True, exist_ok=True)
        for n, event in enumerate(seeds()):
            (out / f"seed-{n}.json").write_bytes(encode(event))
        return
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
