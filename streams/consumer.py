"""Batched, at-least-once consumer loop with dead-letter routing and graceful stop.

One iteration: ``consume(num_messages=batch_size)``, decode each message strictly by
its topic's event type (failures go to the dead-letter topic), hand the good ones to
``handle_batch``, make the dead letters durable, then commit. ``handle_batch`` says
what is durable: ``None`` means the whole batch; a :data:`CommitPlan` names the next
offset to commit per partition (a windowed service holds back its open window).
Nothing is committed before the handler returns, so a crash re-reads the batch.

One rule: a message is either handled or dead-lettered with a reason, and the loop
lives. Decoding and edge validation (``streams.validation``) failures are dead letters.
A ``handle_batch`` that raises is retried (``resilience.handler_attempts`` tries); if it
keeps raising, the batch is bisected to find the message(s) it fails on, those are
dead-lettered as ``handler_error`` (exception type in the detail) and the rest are
handled. A handler that fails for ``resilience.max_consecutive_handler_errors`` messages
in a row is broken, not fed poison: the loop raises :class:`HandlerBroken`.

SIGTERM/SIGINT finish the current batch, commit, and close the consumer (leaving
the group at once instead of after a session timeout).

Leaving during a join: on the embedded broker, a member that leaves the group while its
own join is still pending (a start-up failure, a stop right after subscribing) leaves
the group without a working generation: every later member joins and never gets a
partition (reproduced in tests/integration/test_streams_group_join.py; rejoining does
not repair it, waiting does not either). So the loop never leaves mid-join: on every
exit path, a member that has subscribed but not yet received its assignment keeps
polling (bounded by the session timeout, messages dropped uncommitted) until the join
completes, then leaves. A member still without any assignment
``resilience.assignment_timeout_s`` after subscribing logs an error and reports it in
:attr:`ConsumerLoop.join_stalled_s` (the services' ``/healthz`` turns degraded).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from opentelemetry import trace
from opentelemetry.context import Context

from streams.codec import MAX_EVENT_BYTES, DecodeFailure, decode, may_be_too_deep
from streams.contracts import Event
from streams.deadletter import DeadLetterRouter
from streams.producer import EventProducer
from streams.settings import Settings
from streams.tracing import extract_trace_context
from streams.validation import validate

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
PartitionKey = tuple[str, int]
CommitPlan = dict[PartitionKey, int]
"""Next offset to commit, per (topic, partition)."""

MAX_SPAN_LINKS = 64
SPAN_LINK_SCAN = 4 * MAX_SPAN_LINKS
"""Messages of a batch looked at for links: the links sample the batch's first messages
(scanning every message of a 10,000-message batch without trace headers cost more than
decoding a tenth of them)."""


@dataclass(slots=True)
class Inbound(Generic[E]):
    """A decoded message together with where it came from."""

    event: E
    message: Message

    @property
    def topic(self) -> str:
        return self.message.topic()  # type: ignore[return-value]

    @property
    def partition(self) -> int:
        return self.message.partition()  # type: ignore[return-value]

    @property
    def offset(self) -> int:
        return self.message.offset()  # type: ignore[return-value]

    @property
    def key(self) -> bytes | None:
        return self.message.key()  # type: ignore[return-value]

    @property
    def value(self) -> bytes | None:
        return self.message.value()  # type: ignore[return-value]

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return self.message.headers() or []

    def trace_context(self) -> Context:
        """The producer's trace context carried in the headers."""
        return extract_trace_context(self.message.headers())


def _span_links(batch: list[Inbound[Any]]) -> list[trace.Link]:
    """Links to the producers' span contexts: the first :data:`MAX_SPAN_LINKS` valid ones
    among the first :data:`SPAN_LINK_SCAN` messages.

    Messages without a ``traceparent`` header (any case) cannot carry a valid context,
    so they are skipped without running the propagator.
    """
    links: list[trace.Link] = []
    for inbound in batch[:SPAN_LINK_SCAN]:
        if len(links) >= MAX_SPAN_LINKS:
            break
        headers = inbound.message.headers()
        if not headers or not any(k.lower() == "traceparent" for k, _ in headers):
            continue
        context = extract_trace_context(headers)
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            links.append(trace.Link(span_context))
    return links


class HandlerBroken(RuntimeError):
    """The handler failed for every message of a long run: stop rather than drain the input.

    A handler raises it (or a subclass) itself when it knows the fault is not the input's
    (a store that keeps refusing its writes): the loop then stops at once, without
    retrying the batch or dead-lettering any of it."""


BatchHandler = Callable[[list[Inbound[Any]]], CommitPlan | None]
PartitionHook = Callable[[list[PartitionKey]], CommitPlan | None]


@dataclass
class LoopStats:
    """Counters a loop keeps about itself."""

    batches: int = 0
    consumed: int = 0
    handled: int = 0
    dead_lettered: int = 0
    handler_errors: int = 0
    commits: int = 0
    commit_failures: int = 0


class ConsumerLoop:
    """Consumes ``topics`` in batches and commits only what ``handle_batch`` made durable."""

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str,
        topics: Mapping[str, type[Event]],
        handle_batch: BatchHandler,
        service_name: str,
        producer: EventProducer | None = None,
        batch_size: int = 10_000,
        poll_timeout_s: float = 0.2,
        tracer: trace.Tracer | None = None,
        on_assign: PartitionHook | None = None,
        on_revoke: PartitionHook | None = None,
        on_dead_letter: Callable[[str, str], None] | None = None,
        on_batch: Callable[[dict[str, int], float], None] | None = None,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        config = settings.kafka.consumer_config(group_id)
        config["client.id"] = f"{settings.kafka.client_id}-{service_name}"
        config.update(consumer_config or {})
        self.group_id = group_id
        self.service_name = service_name
        self._topics = dict(topics)
        self._fast_decoders = {
            topic: msgspec.json.Decoder(event_type).decode for topic, event_type in topics.items()
        }
        self._handle_batch = handle_batch
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._tracer = tracer or trace.get_tracer("driftloop.streams")
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_batch = on_batch
        self._owns_producer = producer is None
        self.producer = producer or EventProducer(settings, service_name)
        self.dead_letters = DeadLetterRouter(
            self.producer, settings.topic("deadletter"), service_name,
            on_dead_letter=on_dead_letter,
        )
        self._limits = settings.validation
        self._handler_attempts = settings.resilience.handler_attempts
        self._max_consecutive_errors = settings.resilience.max_consecutive_handler_errors
        self._consecutive_errors = 0
        self._last_handler_error: Exception | None = None
        self._assignment_timeout_s = settings.resilience.assignment_timeout_s
        self._join_settle_s = settings.kafka.session_timeout_ms / 1000.0
        self._subscribed_at: float | None = None
        self._joined = False  # an assignment (maybe empty) arrived since the last revoke
        self._ever_assigned = False
        self._closing = False
        self._settle_keys: set[PartitionKey] = set()
        self._stall_logged = False
        self._consumer = Consumer(config)
        self._paused_topics: set[str] = set()
        self._paused: set[PartitionKey] = set()
        self._stop = threading.Event()
        self._failed = False
        self.assignment: set[PartitionKey] = set()
        self.stats = LoopStats()

    # -- lifecycle -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its current batch, commit and close."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        """Stop gracefully on SIGTERM and SIGINT (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())

    def run(
        self,
        *,
        max_batches: int | None = None,
        idle_timeout_s: float | None = None,
        until: Callable[[], bool] | None = None,
    ) -> LoopStats:
        """Consume until stopped (or a bound is reached), then commit and close."""
        self._failed = False
        if self._stop.is_set():  # stopped before it started: never join the group
            self._close()
            return self.stats
        try:
            self._consumer.subscribe(
                list(self._topics), on_assign=self._assigned, on_revoke=self._revoked,
                on_lost=self._lost,
            )
            self._subscribed_at = last_message = time.monotonic()
            while not self._stop.is_set():
                got = self.poll_once()
                now = time.monotonic()
                self._watch_assignment(now)
                if got:
                    last_message = now
                if max_batches is not None and self.stats.batches >= max_batches:
                    break
                if until is not None and until():
                    break
                if idle_timeout_s is not None and now - last_message > idle_timeout_s:
                    break
        except BaseException:
            # A failed batch may be half done: leave the group without committing.
            self._failed = True
            raise
        finally:
            self._close()
        return self.stats

    @property
    def join_stalled_s(self) -> float | None:
        """Seconds subscribed without any assignment, once past the configured bound."""
        if self._subscribed_at is None or self._ever_assigned or not self._assignment_timeout_s:
            return None
        waited = time.monotonic() - self._subscribed_at
        return waited if waited > self._assignment_timeout_s else None

    def _watch_assignment(self, now: float) -> None:
        stalled = self.join_stalled_s
        if stalled is not None and not self._stall_logged:
            self._stall_logged = True
            log.error(
                "%s: no partitions assigned %.0f s after joining group %s (its topics have "
                "partitions): the group may be stuck; check for a member that left during "
                "its join", self.service_name, stalled, self.group_id,
            )

    def _settle_join(self) -> None:
        """Before leaving: let a pending join complete (see the module doc), bounded."""
        if self._subscribed_at is None or self._joined:
            return
        deadline = time.monotonic() + self._join_settle_s
        log.info("%s: waiting for the pending group join before leaving", self.service_name)
        while not self._joined and time.monotonic() < deadline:
            self._consumer.consume(num_messages=500, timeout=0.1)  # dropped, uncommitted
        if not self._joined:
            log.warning("%s: leaving group %s before its join completed", self.service_name,
                        self.group_id)

    def _close(self) -> None:
        self._closing = True
        try:
            self._settle_join()
        except Exception as exc:  # closing must go on
            log.warning("%s: settling the group join failed: %s", self.service_name, exc)
        try:
            if self._owns_producer:
                self.producer.close()
            else:
                self.producer.flush()
        finally:
            self._consumer.close()
            log.info(
                "%s closed: %d consumed, %d dead-lettered, %d commits",
                self.service_name, self.stats.consumed, self.stats.dead_lettered,
                self.stats.commits,
            )

    # -- flow control ------------------------------------------------------------------

    def pause_topic(self, topic: str) -> None:
        """Stop fetching ``topic`` (its partitions now and any assigned later) until
        :meth:`resume_topic`; its unread messages wait in the broker, nothing is skipped."""
        self._paused_topics.add(topic)
        self._apply_pauses()

    def resume_topic(self, topic: str) -> None:
        """Fetch ``topic`` again from where the loop stopped reading it."""
        self._paused_topics.discard(topic)
        keys = [key for key in self._paused if key[0] == topic]
        if keys:
            self._consumer.resume([TopicPartition(t, p) for t, p in keys])
            self._paused.difference_update(keys)

    def paused_topics(self) -> frozenset[str]:
        """Topics held by :meth:`pause_topic`."""
        return frozenset(self._paused_topics)

    def _apply_pauses(self) -> None:
        keys = [key for key in self.assignment
                if key[0] in self._paused_topics and key not in self._paused]
        if keys:
            self._consumer.pause([TopicPartition(t, p) for t, p in keys])
            self._paused.update(keys)

    # -- one iteration ---------------------------------------------------------------

    def poll_once(self) -> int:
        """Consume, decode, handle and commit one batch; returns messages consumed."""
        if self._paused_topics:
            self._apply_pauses()  # partitions assigned since the pause
        messages = self._consumer.consume(
            num_messages=self._batch_size, timeout=self._poll_timeout_s
        )
        started = time.perf_counter()
        good: list[Inbound[Any]] = []
        append = good.append
        consumed = 0
        per_topic: dict[str, int] = {}
        positions: CommitPlan = {}
        good_keys: set[PartitionKey] = set()
        decoders = self._fast_decoders
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._on_error(err)
                continue
            consumed += 1
            topic = msg.topic()
            per_topic[topic] = per_topic.get(topic, 0) + 1
            key = (topic, msg.partition())
            positions[key] = msg.offset() + 1
            value = msg.value()
            # Fast path: the same decoder and checks as streams.codec.decode, bound once;
            # anything it does not accept goes through decode() for the classified failure.
            event = None
            if (value and len(value) <= MAX_EVENT_BYTES and b'"schema"' in value
                    and not may_be_too_deep(value)):
                try:
                    event = decoders[topic](value)
                except Exception:
                    event = None
            try:
                if event is None:
                    event = decode(value, self._topics[topic])
                validate(event, self._limits)
            except DecodeFailure as failure:
                self.dead_letter(msg, failure.reason.value, failure.detail)
                continue
            except Exception as exc:  # a check that broke on this input: still one message
                self.dead_letter(msg, "decode_error", f"{type(exc).__name__}: {exc}")
                continue
            append(Inbound(event, msg))
            good_keys.add(key)
        if consumed:
            self.stats.batches += 1
            self.stats.consumed += consumed
            self.stats.handled += len(good)
        plan = self._handle_guarded(good, good_keys)
        if consumed or plan:
            # Dead letters and the handler's output must be durable before the commit.
            self.producer.flush()
            self._commit(positions if plan is None else plan)
        if consumed and self._on_batch is not None:
            self._on_batch(per_topic, time.perf_counter() - started)
        return consumed

    def _handle(
        self, batch: list[Inbound[Any]], keys: set[PartitionKey] | None = None
    ) -> CommitPlan | None:
        if not batch:
            return self._handle_batch(batch)
        links = _span_links(batch)
        if keys is None:
            keys = {(inbound.topic, inbound.partition) for inbound in batch}
        topics = sorted({topic for topic, _ in keys})
        partitions = sorted({partition for _, partition in keys})
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": topics[0] if len(topics) == 1 else ",".join(topics),
            "messaging.consumer.group.name": self.group_id,
            "messaging.batch.message_count": len(batch),
        }
        if len(partitions) == 1:
            attributes["messaging.destination.partition.id"] = str(partitions[0])
        with self._tracer.start_as_current_span(
            f"process {attributes['messaging.destination.name']}",
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        ):
            return self._handle_batch(batch)

    # -- handler failures --------------------------------------------------------------

    def _handle_guarded(
        self, batch: list[Inbound[Any]], keys: set[PartitionKey]
    ) -> CommitPlan | None:
        """Handle ``batch``; retry, then bisect and dead-letter the messages it fails on."""
        if not batch:
            return self._handle(batch, keys)  # a tick: no message to blame, so it propagates
        try:
            return self._retrying(batch, keys)
        except HandlerBroken:
            raise
        except Exception:
            if len(batch) == 1:
                return self._handler_error(batch[0])
            return self._bisect(batch)

    def _retrying(
        self, batch: list[Inbound[Any]], keys: set[PartitionKey] | None = None
    ) -> CommitPlan | None:
        for attempt in range(1, self._handler_attempts + 1):
            try:
                plan = self._handle(batch, keys)
            except HandlerBroken:
                raise
            except Exception as exc:
                log.warning(
                    "%s: handler failed on %d message(s), try %d of %d: %s: %s",
                    self.service_name, len(batch), attempt, self._handler_attempts,
                    type(exc).__name__, exc,
                )
                self._last_handler_error = exc
                if attempt == self._handler_attempts:
                    raise
                continue
            self._consecutive_errors = 0
            return plan
        raise AssertionError("unreachable")

    def _bisect(self, batch: list[Inbound[Any]]) -> CommitPlan | None:
        """Handle each half once; a failing half is split again, a failing single retried."""
        mid = len(batch) // 2
        parts: list[tuple[list[Inbound[Any]], CommitPlan | None]] = []
        for half in (batch[:mid], batch[mid:]):
            if len(half) == 1:
                try:
                    plan = self._retrying(half)
                except HandlerBroken:
                    raise
                except Exception:
                    plan = self._handler_error(half[0])
            else:
                try:
                    plan = self._handle(half)
                    self._consecutive_errors = 0
                except HandlerBroken:
                    raise
                except Exception:
                    plan = self._bisect(half)
            parts.append((half, plan))
        return _merge_plans(parts)

    def _handler_error(self, inbound: Inbound[Any]) -> None:
        """Dead-letter the one message the handler keeps failing on (or stop if all fail)."""
        exc = self._last_handler_error
        kind = type(exc).__name__ if exc is not None else "Exception"
        self._consecutive_errors += 1
        if self._consecutive_errors >= self._max_consecutive_errors:
            log.error(
                "%s: the handler failed for %d messages in a row (last %s[%d]@%d: %s: %s); "
                "stopping: this is a broken handler, not bad input",
                self.service_name, self._consecutive_errors, inbound.topic,
                inbound.partition, inbound.offset, kind, exc,
            )
            raise HandlerBroken(
                f"{self.service_name}: handler failed for {self._consecutive_errors} "
                f"messages in a row ({kind}: {exc})"
            ) from exc
        self.dead_letter(inbound.message, "handler_error", f"{kind}: {exc}")
        self.stats.handler_errors += 1
        self.stats.handled -= 1
        return None

    def dead_letter(self, msg: Message, reason: str, detail: str) -> None:
        """Route one message to the dead-letter topic (also for handler-side rejects)."""
        self.dead_letters.route(
            value=msg.value(), key=msg.key(), headers=msg.headers(),
            source_topic=msg.topic() or "?", partition=msg.partition() or 0,
            offset=msg.offset() or 0, reason=reason, detail=detail,
        )
        self.stats.dead_lettered += 1

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise KafkaException(err)
        log.warning("%s consumer error: %s", self.service_name, err)

    # -- commits and rebalances ------------------------------------------------------

    def _commit(self, plan: Mapping[PartitionKey, int]) -> None:
        offsets = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in plan.items()
            if (topic, partition) in self.assignment
        ]
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
            self.stats.commits += 1
        except KafkaException as exc:
            # The partitions moved on; their records are re-read by the new owner.
            self.stats.commit_failures += 1
            log.warning("%s commit failed (will be redelivered): %s", self.service_name, exc)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._joined = self._ever_assigned = True
        if self._closing:  # assigned only so that the member can leave cleanly
            self._settle_keys.update(keys)
            return
        self.assignment.update(keys)
        log.info("%s assigned %s", self.service_name, keys)
        if self._on_assign is not None:
            self._on_assign(keys)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._joined = False
        if self._settle_keys:
            keys = [k for k in keys if k not in self._settle_keys]
            if not keys:
                return
        self._paused.difference_update(keys)
        log.info("%s revoked %s", self.service_name, keys)
        if self._on_revoke is not None:
            plan = self._on_revoke(keys)
            if plan and not self._failed:
                self.producer.flush()
                self._commit({k: v for k, v in plan.items() if k in keys})
        self.assignment.difference_update(keys)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._joined = False
        if self._settle_keys:
            keys = [k for k in keys if k not in self._settle_keys]
            if not keys:
                return
        self._paused.difference_update(keys)
        log.warning("%s lost %s", self.service_name, keys)
        if self._on_revoke is not None:
            self._on_revoke(keys)
        self.assignment.difference_update(keys)


def _merge_plans(
    parts: list[tuple[list[Inbound[Any]], CommitPlan | None]],
) -> CommitPlan | None:
    """One commit plan for sub-batches handled in order: ``None`` if all were ``None``.

    A sub-batch answered ``None`` is durable up to its last message; a later plan for
    the same partition wins (it reflects the handler's state after everything before it).
    """
    if all(plan is None for _, plan in parts):
        return None
    merged: CommitPlan = {}
    for batch, plan in parts:
        if plan is None:
            for inbound in batch:
                key = (inbound.topic, inbound.partition)
                merged[key] = max(merged.get(key, 0), inbound.offset + 1)
        else:
            merged.update(plan)
    return merged
