"""W3C trace context in Kafka message headers.

Producers inject ``traceparent``/``tracestate`` of the span that decided an event;
consumers extract it to link their processing span to it, or to parent the next
decision on it, so one trace follows the causal chain across services.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

Headers = list[tuple[str, bytes]]

_propagator = TraceContextTextMapPropagator()


class _HeaderSetter(Setter[Headers]):
    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k != key]
        carrier.append((key, value.encode("ascii")))


class _HeaderGetter(Getter[Sequence[tuple[str, bytes | str | None]]]):
    """Reads W3C fields from a header list; keys case-insensitive, values bytes or str."""

    def get(self, carrier: Sequence[tuple[str, bytes | str | None]], key: str) -> list[str] | None:
        wanted = key.lower()
        values = []
        for name, value in carrier or ():
            if name.lower() != wanted or value is None:
                continue
            values.append(value.decode("latin-1") if isinstance(value, bytes) else value)
        return values or None

    def keys(self, carrier: Sequence[tuple[str, bytes | str | None]]) -> list[str]:
        return [k for k, _ in carrier or ()]


_setter = _HeaderSetter()
_getter = _HeaderGetter()


def inject_trace_headers(headers: Headers, context: Context | None = None) -> Headers:
    """Add the trace context (the current one by default) to ``headers``, in place."""
    _propagator.inject(headers, context=context, setter=_setter)
    return headers


def extract_trace_context(headers: Sequence[tuple[str, bytes | str | None]] | None) -> Context:
    """The remote span context carried by a message's headers (an empty context if none).

    Extracted into a fresh context, never the caller's, so a message without trace
    headers does not appear to come from the span that happens to be current.
    """
    return _propagator.extract(headers or [], context=Context(), getter=_getter)


def header_value(headers: Sequence[tuple[str, bytes | None]] | None, key: str) -> str | None:
    """The last value of one header, decoded as UTF-8, or None."""
    for k, v in reversed(headers or []):
        if k == key and v is not None:
            return v.decode("utf-8", "replace")
    return None
