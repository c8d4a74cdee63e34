"""Reads whole topics without a consumer group: every partition, from the start.

For readers that need everything a topic holds, whatever partitions of the input their
own group gives them: the control topics an episode book folds, the demo's and the
benchmarks' watch over the loop's output, the report, tests that read a topic back.
``TopicTail(settings, {full topic name: event type})``, then :meth:`TopicTail.drain`
for the events that arrived since the last call, or :meth:`TopicTail.poll` /
:meth:`TopicTail.drain_records` for each event with its message (headers, key,
partition, offset). A topic given ``None`` as its type is read raw: its records carry
no event, only the message.

One rule for what can go wrong, the same for every reader:

- **A topic that does not exist yet** is not an error. The topics that exist are
  assigned at once; for the missing ones the broker's metadata is read again on later
  polls (at most every ``recheck_s`` seconds), so a topic created later is read too,
  from its start. :attr:`TopicTail.missing` names those not found yet. A topic's
  partitions are read from the metadata once, when the topic is assigned.
- **A message that does not decode** as its topic's event type is skipped and counted
  in :attr:`TopicTail.undecodable` (logged at debug level): the topic's own consumers
  dead-letter it, and a reader of the whole topic must not stop on it. A caller for
  which such a message is a failure checks the counter.
- **Partition EOF** is not an error. Any other consume error is logged as a warning,
  counted in :attr:`TopicTail.errors` and skipped (librdkafka retries on its own).

Nothing is committed: a new tail reads every topic from the beginning again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from streams.codec import DecodeFailure, decode
from streams.consumer import Inbound
from streams.contracts import Event
from streams.settings import Settings

log = logging.getLogger(__name__)


def assignable(wanted: list[str], metadata: Mapping[str, Any]
               ) -> tuple[list[TopicPartition], list[str]]:
    """``(partitions to assign from the beginning, topics still missing)`` for the
    ``wanted`` topics, given the broker's topic metadata (``ClusterMetadata.topics``).

    A topic is missing when the metadata does not list it, lists it with an error (a
    topic being created can answer ``LEADER_NOT_AVAILABLE``) or lists no partitions."""
    partitions: list[TopicPartition] = []
    missing: list[str] = []
    for topic in wanted:
        meta = metadata.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            missing.append(topic)
            continue
        partitions += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]
    return partitions, missing


class TopicTail:
    """Every partition of some topics, from the start, no group; see the module's rules.

    Connects at construction (reading the broker's metadata, up to ``metadata_timeout_s``;
    a broker that does not answer raises :class:`confluent_kafka.KafkaException`).
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, settings: Settings, topics: Mapping[str, type[Event] | None], *,
                 name: str = "tail", batch_size: int = 1000, recheck_s: float = 1.0,
                 metadata_timeout_s: float = 10.0) -> None:
        self.name = name
        self._types = dict(topics)
        self._batch_size = batch_size
        self._recheck_s = recheck_s
        self._missing = list(self._types)
        self._checked_at = 0.0
        self._closed = False
        self.messages = 0
        """Messages read (decoded or not; consume errors are not messages)."""
        self.undecodable = 0
        """Messages skipped because they did not decode as their topic's type."""
        self.errors = 0
        """Consume errors other than partition EOF."""
        self._consumer = Consumer(
            settings.kafka.consumer_config(f"driftloop-{name}-{uuid.uuid4().hex}"))
        try:
            self._assign_new(metadata_timeout_s)
        except BaseException:
            self._consumer.close()
            raise

    @property
    def missing(self) -> list[str]:
        """The topics not found on the broker yet (not assigned)."""
        return list(self._missing)

    def _assign_new(self, timeout: float) -> None:
        self._checked_at = time.monotonic()
        metadata = self._consumer.list_topics(timeout=timeout)
        partitions, self._missing = assignable(self._missing, metadata.topics)
        if partitions:
            self._consumer.incremental_assign(partitions)

    def _recheck(self) -> None:
        if not self._missing or time.monotonic() - self._checked_at < self._recheck_s:
            return
        try:
            self._assign_new(timeout=self._recheck_s)
        except KafkaException as exc:  # the broker is away: the next poll asks again
            log.debug("%s: topic metadata unavailable: %s", self.name, exc)

    def _take(self, timeout: float) -> tuple[list[Inbound[Any]], int]:
        """One consume call: ``(records, messages and errors it returned)``."""
        self._recheck()
        messages = self._consumer.consume(num_messages=self._batch_size, timeout=timeout)
        records: list[Inbound[Any]] = []
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    self.errors += 1
                    log.warning("%s: consume error on %s: %s", self.name, msg.topic(), error)
                continue
            self.messages += 1
            event_type = self._types[msg.topic()]
            if event_type is None:
                records.append(Inbound(None, msg))
                continue
            try:
                records.append(Inbound(decode(msg.value() or b"", event_type), msg))
            except DecodeFailure as exc:
                self.undecodable += 1
                log.debug("%s: undecodable message at %s[%s]@%s: %s", self.name,
                          msg.topic(), msg.partition(), msg.offset(), exc)
        return records, len(messages)

    def poll(self, timeout: float = 0.0) -> list[Inbound[Any]]:
        """The records of one fetch (up to ``batch_size`` messages), waiting up to
        ``timeout`` seconds for the first; empty if nothing came."""
        return self._take(timeout)[0]

    def drain_records(self, timeout: float = 0.0) -> list[Inbound[Any]]:
        """Every record that arrives until a wait of ``timeout`` seconds brings no
        message (``timeout=0``: what has already arrived)."""
        out: list[Inbound[Any]] = []
        while True:
            records, taken = self._take(timeout)
            out += records
            if not taken:
                return out

    def drain(self, timeout: float = 0.0) -> list[Any]:
        """The events of :meth:`drain_records` (raw topics' messages are not events)."""
        return [r.event for r in self.drain_records(timeout) if r.event is not None]

    def close(self) -> None:
        """Close the consumer (nothing to commit, no group to leave); idempotent."""
        if not self._closed:
            self._closed = True
            self._consumer.close()

    def __enter__(self) -> TopicTail:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
