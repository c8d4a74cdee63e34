"""Idempotent event producer whose failed deliveries reach the caller.

librdkafka reports delivery asynchronously; this wrapper records every failure
and raises :class:`DeliveryError` from :meth:`EventProducer.flush`, so a service
never commits consumer offsets for work whose output was not acknowledged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from opentelemetry import trace
from opentelemetry.context import Context

from streams.codec import encode
from streams.contracts import Event
from streams.settings import Settings
from streams.tracing import Headers, inject_trace_headers, producer_span

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """One message the broker did not acknowledge."""

    topic: str
    key: bytes | None
    error: str


class DeliveryError(RuntimeError):
    """Raised when messages were not acknowledged by the broker."""

    def __init__(self, failures: list[FailedDelivery], pending: int = 0) -> None:
        first = failures[0].error if failures else "flush timed out"
        super().__init__(
            f"{len(failures)} message(s) failed and {pending} still pending; first error: {first}"
        )
        self.failures = failures
        self.pending = pending


class EventProducer:
    """Produces typed events with trace context and ``event_id`` headers.

    ``acks=all`` and ``enable.idempotence=true`` (from :class:`KafkaSettings`), so a
    retried send never duplicates within a producer session.
    """

    def __init__(
        self,
        settings: Settings,
        service_name: str,
        *,
        tracer: trace.Tracer | None = None,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        config = settings.kafka.producer_config()
        config["client.id"] = f"{settings.kafka.client_id}-{service_name}"
        config.update(extra_config or {})
        self._producer = Producer(config)
        self._settings = settings
        self._tracer = tracer or trace.get_tracer("driftloop.streams")
        self._failures: list[FailedDelivery] = []
        self.sent = 0
        self.acknowledged = 0
        self._closed = False

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(FailedDelivery(msg.topic() or "?", msg.key(), str(err)))
            log.error("delivery to %s failed: %s", msg.topic(), err)
        else:
            self.acknowledged += 1

    def send(
        self,
        topic: str,
        event: Event,
        key: str | bytes | None,
        *,
        context: Context | None = None,
        headers: Headers | None = None,
        span: bool = True,
    ) -> None:
        """Queue ``event`` for ``topic`` (a full topic name) inside a producer span.

        ``context`` parents the send span (default: the current context), so the
        message carries the decision that caused it. ``span=False`` skips the span
        and only propagates ``context`` (bulk replays, where a span per event costs
        more than the send).
        """
        if not span:
            out: Headers = list(headers or [])
            out.append(("event_id", event.event_id.encode()))
            inject_trace_headers(out, context)
            self.send_raw(topic, encode(event), key, out)
            return
        with producer_span(self._tracer, topic, key, message_id=event.event_id,
                           context=context):
            out = list(headers or [])
            out.append(("event_id", event.event_id.encode()))
            inject_trace_headers(out)
            self.send_raw(topic, encode(event), key, out)

    def send_raw(
        self, topic: str, value: bytes | None, key: str | bytes | None, headers: Headers
    ) -> None:
        """Queue raw bytes (used for dead letters, which keep the original value)."""
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                # Local queue full: serve delivery reports until there is room.
                self._producer.poll(0.1)
        self.sent += 1
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued message is acknowledged; raise :class:`DeliveryError` if not."""
        deadline = time.monotonic() + timeout
        pending = self._producer.flush(timeout)
        while pending and time.monotonic() < deadline:
            pending = self._producer.flush(max(0.0, deadline - time.monotonic()))
        if self._failures or pending:
            failures, self._failures = self._failures, []
            raise DeliveryError(failures, pending)

    def close(self, timeout: float = 30.0) -> None:
        """Flush what is queued (raise if anything was lost), then release the client."""
        try:
            self.flush(timeout)
        finally:
            if not self._closed:
                self._closed = True
                self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
