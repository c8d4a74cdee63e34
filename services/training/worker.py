"""``driftloop run train``: turn retrain requests into registered candidates.

For each ``retrain.requests`` event (one at a time; more workers in the group share
the partitions):

1. A request whose ``request_id`` is already registered is not trained again; its
   candidate event is re-published (a crash between registering and publishing
   must not strand a version) and the offset is committed.
2. The base is the current champion. The fresh data is the request's window of
   labelled events, read point-in-time correct from Feast and saved as the
   candidate's own snapshot (its drift reference once promoted); the replay is a
   sample of the base's training snapshot.
3. The run fine-tunes from the base's weights; its checkpoints live in a directory
   keyed by the request id, so a worker killed mid-run resumes there when the
   request is redelivered.
4. The version is registered, then ``models.candidates`` is produced; only then is
   the request's offset committed. SIGTERM writes an emergency checkpoint and
   leaves the request uncommitted.

The model's task and factory come from its settings (``models.<m>.task``/``.factory``).
A request that cannot be trained -- no champion, no data, a label that does not fit
the task, a factory that fails -- is answered failed at once (a ``ValueError``: the
span's error, the failed-training metric, a dead letter ``training_failed`` with the
reason) and its offset committed, so it never crash-loops.

The training span is a child of the retrain decision (through the request's
headers), with an event per evaluation and per checkpoint, so the trace goes on
from drift to candidate.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import trace

from services.observability.setup import Telemetry
from services.runtime import StreamService
from streams.consumer import CommitPlan, Inbound
from streams.contracts import ModelCandidate, RetrainRequest, new_event_id
from streams.settings import Settings

log = logging.getLogger(__name__)

# A run longer than this without a poll would be evicted from the group; training
# blocks the loop (one request at a time), so the budget is generous.
MAX_POLL_INTERVAL_MS = 3_600_000


@dataclass
class WorkerStats:
    """What the worker did, for tests and ``/healthz``."""

    trained: int = 0
    duplicates: int = 0
    failed: int = 0
    interrupted: int = 0


class _SpanProgress:
    """Forwards progress to the terminal/log reporter and records span events."""

    def __init__(self, inner: Any, span: trace.Span, on_checkpoint: Any) -> None:
        self._inner = inner
        self._span = span
        self._on_checkpoint = on_checkpoint

    def start(self, run_id: str, total_steps: int, start_step: int) -> None:
        self._span.add_event("run.start", {"total_steps": total_steps, "start_step": start_step})
        self._inner.start(run_id, total_steps, start_step)

    def step(self, step: int, loss: float, lr: float) -> None:
        self._inner.step(step, loss, lr)

    def evaluate(self, step: int, val_loss: float, best_val_loss: float) -> None:
        self._span.add_event(
            "epoch.evaluated", {"step": step, "val_loss": val_loss, "best_val_loss": best_val_loss}
        )
        self._inner.evaluate(step, val_loss, best_val_loss)

    def checkpoint(self, step: int, path: str) -> None:
        self._span.add_event("checkpoint.written", {"step": step, "path": path})
        self._on_checkpoint()
        self._inner.checkpoint(step, path)

    def finish(self, status: str, step: int, best_val_loss: float) -> None:
        self._span.add_event("run.finish", {"status": status, "step": step})
        self._inner.finish(status, step, best_val_loss)


class TrainingWorker(StreamService):
    """Consumes ``retrain.requests`` and publishes ``models.candidates``."""

    name = "train"

    def __init__(self, settings: Settings, *, telemetry: Telemetry | None = None,
                 store: Any = None) -> None:
        super().__init__(
            settings,
            group_id="driftloop-train",
            topics={settings.topic("retrain.requests"): RetrainRequest},
            telemetry=telemetry,
            batch_size=1,
            consumer_config={"max.poll.interval.ms": MAX_POLL_INTERVAL_MS},
        )
        from services.registry.store import ModelRegistry

        self.registry = ModelRegistry(settings.registry_uri)
        self.runs_root = Path(settings.state_dir) / "runs"
        self._store = store
        self._stop_training = threading.Event()
        self.stats = WorkerStats()

    @property
    def store(self) -> Any:
        """The Feast store, opened on first use (importing feast takes seconds)."""
        if self._store is None:
            from services.features.feast_repo import open_store

            self._store = open_store(self.settings)
        return self._store

    def stop(self) -> None:
        self._stop_training.set()
        super().stop()

    def handle_batch(self, batch: list[Inbound[Any]]) -> CommitPlan | None:
        for inbound in batch:
            if not self._handle_request(inbound):
                # Interrupted: leave this request (and what follows) uncommitted.
                return {(inbound.topic, inbound.partition): inbound.offset}
        return None

    def _handle_request(self, inbound: Inbound[RetrainRequest]) -> bool:
        request = inbound.event
        with self.tracer.start_as_current_span(
            "training run",
            context=inbound.trace_context(),
            kind=trace.SpanKind.CONSUMER,
            links=[trace.Link(trace.get_current_span().get_span_context())],
            attributes={
                "driftloop.model": request.model,
                "driftloop.request_id": request.request_id,
                "driftloop.reason": request.reason,
                "messaging.system": "kafka",
                "messaging.operation.name": "process",
                "messaging.destination.name": inbound.topic,
                "messaging.consumer.group.name": self.group_id,
                "messaging.destination.partition.id": str(inbound.partition),
            },
        ) as span:
            try:
                return self._train_with_retries(request, span)
            except Exception as exc:
                # A request that cannot be trained (no data, no champion) is reported
                # and dead-lettered, never retried forever.
                self.stats.failed += 1
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                self.metrics.record_training_finished(
                    request.model, "failed", 0.0, error_type=type(exc).__name__)
                self.loop.dead_letter(inbound.message, "training_failed", str(exc))
                log.exception("retrain request %s failed", request.request_id)
                return True

    def _train_with_retries(self, request: RetrainRequest, span: trace.Span) -> bool:
        """Transient failures (a parquet file caught mid-rewrite, a registry lock) are
        retried; a request that cannot be trained (``ValueError``: no data, no
        champion) fails at once."""
        attempts = self.settings.model(request.model).retrain.attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._train_and_publish(request, span)
            except ValueError:
                raise
            except Exception as exc:
                if attempt == attempts:
                    raise
                span.add_event("retry", {"attempt": attempt, "error": str(exc)[:200]})
                log.warning("%s: attempt %d failed (%s); retrying", request.request_id,
                            attempt, exc)
                if self._stop_training.wait(2.0 * attempt):
                    return False
        return False

    def _train_and_publish(self, request: RetrainRequest, span: trace.Span) -> bool:
        from services.features.feast_repo import load_model_spec
        from services.features.snapshot import create_snapshot, load_snapshot_frame
        from services.training.progress import auto_progress
        from services.training.runner import TrainingJob, run_job

        existing = self.registry.find_by_request_id(request.model, request.request_id)
        if existing is not None:
            self.stats.duplicates += 1
            span.set_attribute("driftloop.duplicate", True)
            self._publish(request, self.registry.get(request.model, existing))
            return True

        champion = self.registry.get_alias(request.model, "champion")
        if champion is None:
            raise ValueError(f"{request.model} has no champion to fine-tune; run driftloop train")
        parent = self.registry.load(request.model, champion)
        spec = load_model_spec(self.store, request.model)
        if not self._wait_for_labels(request, span):
            return False
        snapshot = create_snapshot(
            self.store, spec, request.window_start, request.window_end,
            cache_root=Path(self.settings.state_dir) / "profiles",
            task=self.settings.model(request.model).task,
        )
        replay = load_snapshot_frame(self.store, parent.training_snapshot_id)
        span.set_attributes({
            "driftloop.base_version": champion,
            "driftloop.snapshot_id": snapshot.snapshot_id,
            "driftloop.fresh_rows": snapshot.rows,
        })
        model_settings = self.settings.model(request.model)
        config = model_settings.training
        job = TrainingJob(
            model=request.model, request_id=request.request_id, reason=request.reason,
            training_snapshot_id=snapshot.snapshot_id, fresh=load_snapshot_frame(
                self.store, snapshot.snapshot_id),
            parent=parent, replay=replay,
            window_start=request.window_start, window_end=request.window_end,
        )
        delay = (datetime.now(UTC) - request.requested_at).total_seconds()
        self.metrics.record_training_started(request.model, delay)
        started = time.monotonic()
        with self.metrics.track_checkpoints(request.model, request.request_id) as watch:
            progress = _SpanProgress(auto_progress(self.settings.observability.progress), span,
                                     watch.checkpoint_written)
            outcome = run_job(job, spec, self.registry, self.runs_root, config,
                              stop_event=self._stop_training, progress=progress,
                              task=model_settings.task, factory=model_settings.factory)
        duration = time.monotonic() - started
        if outcome.status == "interrupted":
            self.stats.interrupted += 1
            span.set_attribute("driftloop.interrupted", True)
            self.metrics.record_training_finished(request.model, "interrupted", duration)
            return False
        assert outcome.version is not None
        loss = outcome.result.best_val_loss if outcome.result is not None else None
        self.metrics.record_training_finished(request.model, "completed", duration,
                                              final_loss=loss)
        if outcome.status == "duplicate":
            self.stats.duplicates += 1
        else:
            self.stats.trained += 1
        with self.tracer.start_as_current_span(
            "register candidate",
            attributes={"driftloop.model": request.model,
                        "driftloop.version": outcome.version.version},
        ):
            self._publish(request, outcome.version)
        latency = (datetime.now(UTC) - request.requested_at).total_seconds()
        self.metrics.record_candidate_registered(request.model, request.reason, latency)
        return True

    def _wait_for_labels(self, request: RetrainRequest, span: trace.Span) -> bool:
        """Labels trail their features: wait (bounded) until the window has enough.

        ``models.<name>.retrain.min_fresh_rows`` (default 500) labelled events must be
        in the offline store, or ``label_wait_s`` (default 300) pass, after which the
        run goes ahead with what is there (or fails if there is nothing).
        """
        from services.features.feast_repo import load_layout
        from services.features.snapshot import build_training_frame

        retrain = self.settings.model(request.model).retrain
        min_rows = retrain.min_fresh_rows
        deadline = time.monotonic() + retrain.label_wait_s
        layout = load_layout(self.store, request.model)
        while True:
            _, labelled = build_training_frame(
                self.store, layout, request.window_start, request.window_end)
            if labelled >= min_rows or time.monotonic() >= deadline:
                span.add_event("labels.ready", {"labelled": labelled, "wanted": min_rows})
                return True
            if self._stop_training.wait(2.0):
                return False
            log.info("%s: %d of %d labelled events in the window; waiting for labels",
                     request.request_id, labelled, min_rows)

    def _publish(self, request: RetrainRequest, version: Any) -> None:
        candidate = ModelCandidate(
            event_id=new_event_id(), model=request.model, version=version.version,
            parent_version=version.manifest.lineage.parent_version,
            request_id=request.request_id,
            registry_uri=version.uri, sha256=version.manifest_sha256,
        )
        self.producer.send(self.settings.topic("models.candidates"), candidate, key=request.model)
        self.producer.flush()
        log.info("candidate %s v%d published (request %s)", request.model, version.version,
                 request.request_id)


def build(settings: Settings) -> TrainingWorker:
    """Factory for ``driftloop run train``."""
    return TrainingWorker(settings)
