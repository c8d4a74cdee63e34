"""Dead-letter routing: bad input is kept, explained and counted, never fatal.

The original bytes and headers go to the ``deadletter`` topic under the original
key, with headers saying why (``dlq.reason``, ``dlq.detail``) and where from
(``dlq.source.topic``, ``dlq.source.partition``, ``dlq.source.offset``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from streams.producer import EventProducer
from streams.tracing import Headers

log = logging.getLogger(__name__)

REASON_HEADER = "dlq.reason"
DETAIL_HEADER = "dlq.detail"
SOURCE_TOPIC_HEADER = "dlq.source.topic"
SOURCE_PARTITION_HEADER = "dlq.source.partition"
SOURCE_OFFSET_HEADER = "dlq.source.offset"
SERVICE_HEADER = "dlq.service"
ORIGINAL_SIZE_HEADER = "dlq.original.size"
_MAX_DETAIL = 512
MAX_DEAD_LETTER_BYTES = 900_000
"""Values above this are truncated (the full original stays at its source offset), since
a broker's default limit of about 1 MB would refuse them and stall the loop."""


class DeadLetterRouter:
    """Sends rejected messages to the dead-letter topic and counts them by reason."""

    def __init__(
        self,
        producer: EventProducer,
        topic: str,
        service_name: str,
        *,
        on_dead_letter: Callable[[str, str], None] | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._service = service_name
        self._on_dead_letter = on_dead_letter
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        """Messages routed so far."""
        return sum(self.counts.values())

    def route(
        self,
        *,
        value: bytes | None,
        key: bytes | None,
        headers: Headers | None,
        source_topic: str,
        partition: int,
        offset: int,
        reason: str,
        detail: str,
    ) -> None:
        """Queue one rejected message; durable once the producer is flushed."""
        out: Headers = [h for h in (headers or []) if not h[0].startswith("dlq.")]
        if value is not None and len(value) > MAX_DEAD_LETTER_BYTES:
            out.append((ORIGINAL_SIZE_HEADER, str(len(value)).encode()))
            value = value[:MAX_DEAD_LETTER_BYTES]
        out += [
            (REASON_HEADER, reason.encode()),
            (DETAIL_HEADER, detail[:_MAX_DETAIL].encode("utf-8", "replace")),
            (SOURCE_TOPIC_HEADER, source_topic.encode()),
            (SOURCE_PARTITION_HEADER, str(partition).encode()),
            (SOURCE_OFFSET_HEADER, str(offset).encode()),
            (SERVICE_HEADER, self._service.encode()),
        ]
        self._producer.send_raw(self._topic, value, key, out)
        self.counts[reason] += 1
        log.warning(
            "dead-lettered %s[%d]@%d: %s (%s)", source_topic, partition, offset, reason,
            detail[:120],
        )
        if self._on_dead_letter is not None:
            self._on_dead_letter(reason, source_topic)
