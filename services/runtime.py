"""What every Kafka-facing service shares: telemetry, a producer, a consumer loop, health.

A service subclasses :class:`StreamService`, names its group and input topics, and
implements :meth:`StreamService.handle_batch` (pure work plus produced events).
Consumption metrics, dead-letter counts, process spans, graceful stop and the
``/healthz`` endpoint come from here, the same for every service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from services.observability.health import HealthHandle, PostHandler, start_health_server
from services.observability.setup import Telemetry, init_telemetry
from streams.consumer import CommitPlan, ConsumerLoop, Inbound, LoopStats, PartitionKey
from streams.contracts import Event
from streams.producer import EventProducer
from streams.settings import Settings

log = logging.getLogger(__name__)


class StreamService:
    """Base of the long-running services (``driftloop run NAME``)."""

    name: str = "service"

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str,
        topics: Mapping[str, type[Event]],
        telemetry: Telemetry | None = None,
        batch_size: int = 10_000,
        poll_timeout_s: float = 0.2,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry or init_telemetry(f"driftloop-{self.name}", settings=settings)
        self.tracer = self.telemetry.tracer
        self.metrics = self.telemetry.metrics
        self.producer = EventProducer(settings, self.name, tracer=self.tracer)
        # Groups live in the same namespace as the topics, so two environments sharing
        # a cluster (or two test runs sharing a broker) never join each other's groups.
        group_id = f"{settings.topics.prefix}{group_id}"
        self.group_id = group_id
        self.loop = ConsumerLoop(
            settings,
            group_id=group_id,
            topics=topics,
            handle_batch=self.handle_batch,
            service_name=self.name,
            producer=self.producer,
            batch_size=batch_size,
            poll_timeout_s=poll_timeout_s,
            tracer=self.tracer,
            on_assign=self.on_assign,
            on_revoke=self.on_revoke,
            on_dead_letter=lambda reason, topic: self.metrics.record_dead_letter(topic, reason),
            on_batch=self._record_batch,
            consumer_config=consumer_config,
        )
        self.health: HealthHandle | None = None

    # -- to implement ----------------------------------------------------------------

    def handle_batch(self, batch: list[Inbound[Any]]) -> CommitPlan | None:
        """Do the work for ``batch`` (may be empty: a tick); return what is durable."""
        raise NotImplementedError

    def on_assign(self, partitions: list[PartitionKey]) -> CommitPlan | None:
        """Partitions were assigned to this member (state may be rebuilt here)."""
        return None

    def on_revoke(self, partitions: list[PartitionKey]) -> CommitPlan | None:
        """Partitions are leaving this member: drop their state, say what is durable."""
        return None

    def health_status(self) -> str | tuple[str, dict[str, Any]]:
        """``ok`` or ``degraded`` (with detail) for ``/healthz``."""
        return "ok", {"consumed": self.loop.stats.consumed,
                      "dead_lettered": self.loop.stats.dead_lettered}

    def http_routes(self) -> dict[str, PostHandler]:
        """``POST`` paths this service answers on its health port (none by default)."""
        return {}

    # -- lifecycle -------------------------------------------------------------------

    def run(
        self,
        *,
        max_batches: int | None = None,
        idle_timeout_s: float | None = None,
        until: Callable[[], bool] | None = None,
    ) -> LoopStats:
        """Consume until stopped (or a bound is reached), then commit, flush and close."""
        self.health = start_health_server(
            self.telemetry, http=self.settings.http, status=self._health,
            routes=self.http_routes(),
        )
        try:
            return self.loop.run(
                max_batches=max_batches, idle_timeout_s=idle_timeout_s, until=self._until(until)
            )
        finally:
            if self.health is not None:
                self.health.stop()
            try:
                self.producer.close()
            finally:
                self.telemetry.force_flush()

    def _health(self) -> str | tuple[str, dict[str, Any]]:
        """The service's own status, degraded while its group join is stalled."""
        result = self.health_status()
        status, detail = (result, {}) if isinstance(result, str) else result
        stalled = self.loop.join_stalled_s
        if stalled is not None:
            detail = {**detail, "group_join": f"no partitions assigned after {stalled:.0f} s"}
            return "degraded", detail
        return status, detail

    def _until(self, until: Callable[[], bool] | None) -> Callable[[], bool]:
        def check() -> bool:
            if self.health is not None:
                self.health.mark_progress()
            return until() if until is not None else False

        return check

    def stop(self) -> None:
        """Finish the current batch, commit and close."""
        self.loop.stop()

    def _record_batch(self, per_topic: dict[str, int], seconds: float) -> None:
        for topic, count in per_topic.items():
            self.metrics.record_consumed(topic, self.group_id, count)
            self.metrics.record_process_duration(topic, self.group_id, seconds)
