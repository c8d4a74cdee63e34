"""``driftloop run train``: turn retrain requests into registered candidates.

For each ``retrain.requests`` event (one at a time; more workers in the group share
the partitions):

1. A request whose ``request_id`` is already registered is not trained again; its
   candidate event is re-published (a crash between registering and publishing
   must not strand a version) and the offset is committed.
2. The worker follows the control topics (``services.episodes.reader.ControlReader``,
   drained every batch and tick) and asks its episode book before training a
   detector's request: one absorbed into another open episode, of an episode already
   promoted or failed, or superseded by a later attempt, is not trained (logged, span
   attribute ``driftloop.skipped``, committed). Manual requests are always trained.
   A request with ``not_before`` in the future (a retry) starts only then (an
   interruptible wait of at most ``retrain.retry_after_s``).
3. The base is the current champion. The fresh data is every labelled event after the
   episode's change point up to the newest one in the offline store when the attempt
   runs, so a retry sees what arrived since. That change point is the latest estimate
   the book holds for the episode when the attempt starts (the request's, the joined
   alarms', the absorbed requests': :func:`~services.training.attempts.attempt_change_start`),
   so a detector's early estimate does not let pre-change rows in. Where the rows after it
   drift from the parent's reference (the inputs moved: a covariate episode, whichever
   detector opened it; a concept one is ``reclassified``), the fresh data starts where
   the moved features locate the change (:mod:`services.training.shift`), searched from
   the episode's earliest estimate, so both detectors train on the same post-change rows
   and none from before; then a ramp still going is waited out
   (:mod:`services.training.settle`). A concept episode that only the online learner's
   own error stands behind is checked against the champion's loss first
   (:mod:`services.training.concept`): not risen after the change point, it ends
   ``adapted`` untrained. The worker waits (up to
   ``retrain.label_wait_s``) for ``retrain.min_fresh_rows`` of them; a detector's
   attempt that does not get them is answered ``insufficient_data`` on
   ``retrain.episodes`` and followed by the next attempt (see 6). The fresh rows are
   saved as the candidate's own snapshot (its drift reference once promoted); the
   replay is a sample of the base's training snapshot. The lineage (and the span)
   record the episode, attempt, change point, the window used, fresh and replay rows
   and the replay's share.
4. The run fine-tunes from the base's weights; its checkpoints live in a directory
   keyed by the request id, so a worker killed mid-run resumes there when the
   request is redelivered.
5. The version is registered, then ``models.candidates`` is produced; only then is
   the request's offset committed. SIGTERM writes an emergency checkpoint and
   leaves the request uncommitted.
6. An attempt that did not adapt the model -- too few labelled rows after the change,
   or a ``reject`` verdict on its candidate (read from the control topics, answered
   once per rejected attempt) -- is followed by the next attempt of its episode, unless
   the champion it lost to was promoted by an earlier episode (the episode ends
   ``adapted``, with the verdict as evidence: that champion is as good as a model of
   the data after this change): a
   request with the deterministic id of that attempt (two workers deciding it train
   once), ``not_before`` = now + ``retrain.retry_after_s``, and a ``retrying`` event.
   At ``retrain.episode_attempts`` the episode is reported ``failed`` instead (event,
   metric, one error line). Every episode status sent is counted
   (``driftloop.retrain.episodes``).
7. A ``promote`` verdict on a concept episode's candidate that learned from fewer than
   ``retrain.concept_refine_rows`` post-change rows (its lineage's ``fresh_rows``) is
   followed by one refinement attempt (``refinement: true``, the next attempt's
   deterministic id, based on the promoted version, ``not_before`` = now +
   ``retrain.refine_after_s``) and a ``refining`` event. It trains like any attempt, from
   the champion of the moment, on every labelled row after the change point by then; a
   rejected, data-starved or failed refinement ends there (the episode keeps its
   promotion).

The model's task and factory come from its settings (``models.<m>.task``/``.factory``).
A request that cannot be trained -- no champion, no data, a label that does not fit
the task, a factory that fails -- is answered failed at once (a ``ValueError``: the
span's error, the failed-training metric, a dead letter ``training_failed`` with the
reason, and for a detector's request its episode ``failed``) and its offset
committed, so it never crash-loops.

The training span is a child of the retrain decision (through the request's
headers), with an event per evaluation and per checkpoint, so the trace goes on
from drift to candidate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from services.episodes.reader import ControlReader
from services.observability.setup import Telemetry
from services.runtime import StreamService
from services.training.attempts import (
    FreshWindow,
    Next,
    adapted_by,
    after_attempt,
    after_rejection,
    attempt_change_start,
    attempt_training_config,
    champion_alarmed,
    concept_only,
    enough_rows,
    episode_event,
    episode_reason,
    fresh_window,
    next_attempt,
    skip_reason,
    wants_refinement,
)
from streams.consumer import CommitPlan, Inbound
from streams.contracts import (
    EpisodeEvent,
    ModelCandidate,
    RetrainRequest,
    ShadowVerdict,
    new_event_id,
)
from streams.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# A run longer than this without a poll would be evicted from the group; training
# blocks the loop (one request at a time), so the budget is generous.
MAX_POLL_INTERVAL_MS = 3_600_000
# How long a request waits for the control reader to show it (its episode decides
# whether it is trained); after that it is trained on what the book knows.
CONTROL_CATCH_UP_S = 5.0
LABEL_POLL_S = 2.0
MAX_PENDING_REJECTIONS = 1_000


@dataclass
class WorkerStats:
    """What the worker did, for tests and ``/healthz``."""

    trained: int = 0
    duplicates: int = 0
    failed: int = 0
    interrupted: int = 0
    skipped: int = 0  # not trained: absorbed, closed or superseded episode
    insufficient: int = 0  # attempts answered insufficient_data
    retries: int = 0  # next attempts requested
    episodes_failed: int = 0
    refinements: int = 0  # refinement attempts requested after a promotion
    adapted: int = 0  # concept attempts not trained: the champion's loss did not rise


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
        self.control = ControlReader(settings, name="train-control")
        self._requests: dict[str, RetrainRequest] = {}  # every request read, by id
        self._rejections: list[ShadowVerdict] = []  # waiting for their request
        self._promotions: list[ShadowVerdict] = []  # promote verdicts, the same way
        self._answered: set[str] = set()  # rejected request ids already followed up

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

    def run(self, **kwargs: Any) -> Any:
        """Consume until stopped (see :meth:`StreamService.run`), then close the control
        reader."""
        try:
            return super().run(**kwargs)
        finally:
            self.control.close()

    def handle_batch(self, batch: list[Inbound[Any]]) -> CommitPlan | None:
        self._follow_control()
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
            span.set_attributes({
                "driftloop.episode_id": request.episode,
                "driftloop.attempt": request.attempt,
                "driftloop.change_point": request.change_start.isoformat(),
            })
            try:
                if self._skipped(request, span):
                    return True
                if not self._wait_not_before(request, span):
                    return False
                if self._skipped(request, span, catch_up=False):
                    return True
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
                if request.reason != "manual" and not request.refinement:
                    self._continue_episode(request, "failed", f"training failed: {exc}")
                return True

    # -- episodes ----------------------------------------------------------------------

    def _follow_control(self) -> None:
        """Read what arrived on the control topics and follow up rejected attempts.

        Never raises: a tick's error would end the loop, and the decisions wait for the
        next drain."""
        try:
            events = self.control.drain()
            for event in events:
                if isinstance(event, RetrainRequest):
                    self._requests.setdefault(event.request_id, event)
                elif isinstance(event, ShadowVerdict) and event.request_id:
                    if event.decision == "reject":
                        self._rejections.append(event)
                    elif event.decision == "promote":
                        self._promotions.append(event)
            self._rejections = self._follow_verdicts(self._rejections, self._after_rejection)
            self._promotions = self._follow_verdicts(self._promotions, self._after_promotion)
        except Exception as exc:
            log.warning("train: following the control topics failed (%s: %s); retrying at "
                        "the next batch", type(exc).__name__, exc)

    def _follow_verdicts(
        self, verdicts: list[ShadowVerdict],
        follow: Callable[[RetrainRequest, ShadowVerdict], None],
    ) -> list[ShadowVerdict]:
        """Follow up each verdict once its request is read (once per request); returns
        those still waiting for their request (bounded)."""
        waiting: list[ShadowVerdict] = []
        for verdict in verdicts:
            assert verdict.request_id is not None
            if verdict.request_id in self._answered:
                continue
            request = self._requests.get(verdict.request_id)
            if request is None:
                waiting.append(verdict)  # its request is not read yet
                continue
            self._answered.add(verdict.request_id)
            follow(request, verdict)
        return waiting[-MAX_PENDING_REJECTIONS:]

    def _after_promotion(self, request: RetrainRequest, verdict: ShadowVerdict) -> None:
        """A concept candidate promoted from few post-change rows: ask for its refinement."""
        retrain = self.settings.model(request.model).retrain
        if not concept_only(self.control.book, request) or request.refinement or (
                not retrain.concept_refine_rows):
            return
        try:
            lineage = self.registry.get(request.model, verdict.candidate).manifest.lineage
        except Exception as exc:  # the promotion stands; a refinement is a bonus
            log.warning("%s: v%d's lineage unreadable (%s); no refinement", request.model,
                        verdict.candidate, exc)
            return
        if not wants_refinement(self.control.book, request, lineage.fresh_rows,
                                retrain.concept_refine_rows):
            return
        now = datetime.now(UTC)
        refine = next_attempt(request, now, retrain.refine_after_s, refinement=True,
                              base_version=verdict.candidate)
        assert refine.not_before is not None
        self.producer.send(self.settings.topic("retrain.requests"), refine, key=request.model)
        self._send_episode(episode_event(
            request, "refining", now, attempt=refine.attempt, request_id=refine.request_id,
            detail=f"v{verdict.candidate} learned from {lineage.fresh_rows} post-change rows "
                   f"(fewer than {retrain.concept_refine_rows}); refinement not before "
                   f"{refine.not_before.isoformat()}"))
        self.producer.flush()
        self.stats.refinements += 1
        log.info("%s: episode %s: v%d learned from %d post-change rows; refinement %s "
                 "requested", request.model, request.episode, verdict.candidate,
                 lineage.fresh_rows, refine.request_id)

    def _after_rejection(self, request: RetrainRequest, verdict: ShadowVerdict) -> None:
        book = self.control.book
        limit = self.settings.model(request.model).retrain.episode_attempts
        decision = after_rejection(book, request, limit, champion=verdict.champion)
        if decision is None:
            return
        cause = (f"candidate v{verdict.candidate} of attempt {request.attempt} rejected "
                 f"({verdict.reason})")
        evidence: list[str] = []
        if decision == "adapted":
            episode = book.of_request(request.request_id)
            earlier = adapted_by(book, request.model, verdict.champion,
                                 episode.episode_id if episode is not None else "")
            assert earlier is not None
            cause = (f"{cause}: champion v{verdict.champion}, promoted by episode "
                     f"{earlier.episode_id} (change point {earlier.change_point.isoformat()}), "
                     f"is already as good as a model of the data after this change")
            evidence = [
                f"verdict {verdict.event_id}: {verdict.metric} v{verdict.candidate} "
                f"{verdict.candidate_metric:.6g} vs v{verdict.champion} "
                f"{verdict.champion_metric:.6g} over {verdict.samples} pairs",
                f"episode {earlier.episode_id} promoted v{verdict.champion}",
            ]
        self._continue_episode(request, decision, cause, evidence)

    def _continue_episode(self, request: RetrainRequest, decision: Next, cause: str,
                          evidence: list[str] | None = None) -> None:
        """Ask for the next attempt of ``request``'s episode, or report it adapted already
        or failed."""
        retrain = self.settings.model(request.model).retrain
        now = datetime.now(UTC)
        if decision == "retry":
            retry = next_attempt(request, now, retrain.retry_after_s)
            assert retry.not_before is not None
            self.producer.send(self.settings.topic("retrain.requests"), retry, key=request.model)
            self._send_episode(episode_event(
                request, "retrying", now, attempt=retry.attempt, request_id=retry.request_id,
                detail=f"{cause}; attempt {retry.attempt} of {retrain.episode_attempts} "
                       f"not before {retry.not_before.isoformat()}"))
            self.stats.retries += 1
            log.info("%s: episode %s: %s; attempt %d requested (%s)", request.model,
                     request.episode, cause, retry.attempt, retry.request_id)
        elif decision == "adapted":
            self._send_episode(episode_event(request, "adapted", now, detail=cause,
                                             evidence=evidence))
            log.warning("%s: episode %s ends without another attempt: %s", request.model,
                        request.episode, cause)
        else:
            self._send_episode(episode_event(
                request, "failed", now,
                detail=f"{cause}; {request.attempt} of {retrain.episode_attempts} attempts "
                       "used, the model stays unadapted"))
            self.stats.episodes_failed += 1
            log.error("%s: episode %s failed after attempt %d of %d: %s", request.model,
                      request.episode, request.attempt, retrain.episode_attempts, cause)
        self.producer.flush()

    def _send_episode(self, event: EpisodeEvent) -> None:
        self.producer.send(self.settings.topic("retrain.episodes"), event, key=event.model)
        self.metrics.record_episode(event.model, event.status)

    def _skipped(self, request: RetrainRequest, span: trace.Span, *,
                 catch_up: bool = True) -> bool:
        """Whether the episode book says not to train ``request`` (logged, span attribute).

        The book must have read the request itself (and so every earlier one of its
        model): the reader is drained until it has, for a bounded time."""
        if request.reason == "manual":
            return False
        book = self.control.book
        if catch_up:
            deadline = time.monotonic() + CONTROL_CATCH_UP_S
            while book.of_request(request.request_id) is None:
                if time.monotonic() >= deadline:
                    log.warning("%s: request not seen on the control topics within %.0f s; "
                                "deciding without it", request.request_id, CONTROL_CATCH_UP_S)
                    break
                if self._stop_training.wait(0.1):
                    break
                self._follow_control()
        reason = skip_reason(book, request)
        if reason is None:
            return False
        self.stats.skipped += 1
        span.set_attribute("driftloop.skipped", reason)
        log.info("%s: request %s (attempt %d) not trained: %s", request.model,
                 request.request_id, request.attempt, reason)
        return True

    def _wait_not_before(self, request: RetrainRequest, span: trace.Span) -> bool:
        """Wait until the request's ``not_before`` (at most ``retry_after_s``); ``False``
        when stopped meanwhile."""
        if request.not_before is None:
            return True
        delay = (request.not_before - datetime.now(UTC)).total_seconds()
        if delay <= 0:
            return True
        retrain = self.settings.model(request.model).retrain
        longest = max(retrain.retry_after_s, retrain.refine_after_s if request.refinement
                      else 0.0)
        if delay > longest:
            log.warning("%s: not_before is %.0f s away; waiting %.0f s (retrain.retry_after_s"
                        "%s)", request.request_id, delay, longest,
                        ", refine_after_s" if request.refinement else "")
            delay = longest
        span.add_event("not_before.wait", {"seconds": delay})
        log.info("%s: attempt %d starts in %.0f s", request.request_id, request.attempt, delay)
        return not self._stop_training.wait(delay)

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
        change = attempt_change_start(self.control.book, request)
        counted = self._await_fresh_labels(request, change, span)
        if counted is None:
            return False
        self._follow_control()  # alarms that joined while the labels came in
        later = attempt_change_start(self.control.book, request)
        if later > change:
            change = later
            counted = self._await_fresh_labels(request, change, span, wait=False)
            assert counted is not None
        labelled, newest = counted
        model_settings = self.settings.model(request.model)
        if (request.reason != "manual"
                and not enough_rows(labelled, model_settings.retrain.min_fresh_rows)):
            self._answer_insufficient(request, change, labelled, span)
            return True
        window = fresh_window(change, labelled, newest)
        if window is None:
            raise ValueError(f"no labelled events for {request.model} after the change point "
                             f"{change.isoformat()}")
        located = self._locate(request, spec, parent, change, window, span)
        if located is None:
            return False
        change, window = located
        if not self._concept_holds(request, spec, parent, change, window, span):
            return True
        if (request.reason != "manual"
                and not enough_rows(window.labelled, model_settings.retrain.min_fresh_rows)):
            self._answer_insufficient(request, change, window.labelled, span)
            return True
        change, window, joined = self._settle(request, spec, change, window, span)
        snapshot = create_snapshot(
            self.store, spec, window.start, window.end,
            cache_root=Path(self.settings.state_dir) / "profiles",
            task=model_settings.task, joined=joined,
        )
        replay = load_snapshot_frame(self.store, parent.training_snapshot_id)
        span.set_attributes({
            "driftloop.fresh_change_point": change.isoformat(),
            "driftloop.base_version": champion,
            "driftloop.snapshot_id": snapshot.snapshot_id,
            "driftloop.fresh_start": window.start.isoformat(),
            "driftloop.fresh_end": window.end.isoformat(),
            "driftloop.fresh_rows": snapshot.rows,
        })
        config = attempt_training_config(request, model_settings, self.control.book)
        span.set_attribute("driftloop.replay_ratio", config.data.replay_ratio)
        job = TrainingJob(
            model=request.model, request_id=request.request_id,
            reason=episode_reason(self.control.book, request),
            training_snapshot_id=snapshot.snapshot_id, fresh=load_snapshot_frame(
                self.store, snapshot.snapshot_id),
            parent=parent, replay=replay,
            window_start=window.start, window_end=window.end,
            episode_id=request.episode, attempt=request.attempt,
            change_point=change,
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
        lineage = outcome.version.manifest.lineage
        span.set_attributes({
            "driftloop.version": outcome.version.version,
            "driftloop.train_fresh_rows": lineage.fresh_rows or 0,
            "driftloop.replay_rows": lineage.replay_rows or 0,
            "driftloop.replay_share": lineage.replay_share or 0.0,
        })
        with self.tracer.start_as_current_span(
            "register candidate",
            attributes={"driftloop.model": request.model,
                        "driftloop.version": outcome.version.version},
        ):
            self._publish(request, outcome.version)
        latency = (datetime.now(UTC) - request.requested_at).total_seconds()
        self.metrics.record_candidate_registered(request.model, request.reason, latency)
        return True

    def _await_fresh_labels(self, request: RetrainRequest, change: datetime,
                            span: trace.Span, *, wait: bool = True, wanted: int | None = None,
                            ) -> tuple[int, datetime | None] | None:
        """Labels trail their features: wait (bounded) for enough after the change point.

        Counts the labelled events whose feature time is at or after ``change`` (up to
        ``validation.event_time_max``: everything stored) until ``wanted`` (default
        ``retrain.min_fresh_rows``) are there or ``retrain.label_wait_s`` has passed
        (``wait=False``: counts once). Returns the count and the newest such event time;
        ``None`` when stopped.
        """
        from services.features.feast_repo import load_layout
        from services.features.snapshot import labelled_span

        retrain = self.settings.model(request.model).retrain
        wanted = retrain.min_fresh_rows if wanted is None else wanted
        deadline = time.monotonic() + (retrain.label_wait_s if wait else 0.0)
        layout = load_layout(self.store, request.model)
        upper = self.settings.validation.event_time_max
        while True:
            labelled, newest = labelled_span(self.store, layout, change, upper)
            ready = enough_rows(labelled, wanted)
            if ready or time.monotonic() >= deadline:
                span.add_event("labels.ready" if ready else "labels.short",
                               {"labelled": labelled, "wanted": wanted})
                return labelled, newest
            log.info("%s: %d of %d labelled events after the change point; waiting for labels",
                     request.request_id, labelled, wanted)
            if self._stop_training.wait(LABEL_POLL_S):
                return None

    def _locate(
        self, request: RetrainRequest, spec: Any, parent: Any, change: datetime,
        window: FreshWindow, span: trace.Span,
    ) -> tuple[datetime, FreshWindow] | None:
        """Where the new normal starts, from the inputs (:mod:`services.training.shift`).

        The rows after ``change`` are checked against the parent's reference by the drift
        policy; where they moved, the episode is a covariate one whoever opened it (a
        concept episode is ``reclassified``), and the fresh data starts where the moved
        features located the change, searched from the episode's earliest estimate: both
        detectors' episodes train on the same post-change rows, and none from before.
        Fewer than ``retrain.min_fresh_rows`` after the located start: waits for them
        (``retrain.label_wait_s``). Not for manual requests, refinements or a model with a
        declared cycle. Returns the change point and window to go on with; ``None`` when
        stopped meanwhile."""
        import pandas as pd

        from services.features.feast_repo import TIMESTAMP_COLUMN, load_layout
        from services.features.snapshot import build_training_frame, load_profile_for_snapshot
        from services.training.shift import inputs_moved, locate_shift

        model_settings = self.settings.model(request.model)
        if (request.reason == "manual" or request.refinement
                or model_settings.drift.seasonality is not None):
            return change, window
        book = self.control.book
        episode = book.of_request(request.request_id)
        earliest = min(change, request.change_start,
                       episode.earliest_change_point if episode is not None else change)
        layout = load_layout(self.store, request.model)
        frame, _ = build_training_frame(self.store, layout, earliest, window.end)
        if frame.empty:
            return change, window
        times = pd.to_datetime(frame[TIMESTAMP_COLUMN], utc=True)
        reference = load_profile_for_snapshot(
            self.store, spec, parent.training_snapshot_id,
            cache_root=Path(self.settings.state_dir) / "profiles")
        evidence = inputs_moved(frame[times >= pd.Timestamp(change)], spec, reference,
                                model_settings.drift, TIMESTAMP_COLUMN)
        span.add_event("shift.evidence", {"moved": evidence.moved, "rows": evidence.rows,
                                          "features": ",".join(evidence.features)})
        if not evidence.moved:
            return change, window
        if concept_only(book, request):
            event = episode_event(
                request, "reclassified", datetime.now(UTC), reason="covariate",
                evidence=[f"moved against v{parent.version}'s reference: "
                          + ", ".join(evidence.features)],
                detail=f"{evidence.rows} rows after the change point drift from the "
                       f"parent's reference: a covariate episode")
            self._send_episode(event)
            self.producer.flush()
            book.fold(event)
            log.info("%s: episode %s is a covariate one: %s moved against v%d's reference",
                     request.model, request.episode, ", ".join(evidence.features),
                     parent.version)
        located = locate_shift(frame, reference, evidence.features, TIMESTAMP_COLUMN)
        span.add_event("shift.located", {
            "rows": located.rows, "split_row": located.split_row,
            "margin_rows": located.margin_rows, "divergence": located.divergence,
            "ramp_rounds": located.ramp_rounds,
            "start": located.start.isoformat() if located.start is not None else ""})
        if located.start is None or located.start == change:
            return change, window
        log.info("%s: request %s: the inputs moved at %s (%d of %d rows searched before it, "
                 "%d skipped after): the fresh data starts there, not at %s", request.model,
                 request.request_id, located.start.isoformat(), located.split_row,
                 located.rows, located.margin_rows, change.isoformat())
        counted = self._await_fresh_labels(request, located.start, span,
                                           wait=located.start > change)
        if counted is None:
            return None
        moved = fresh_window(located.start, *counted)
        if moved is None:
            return located.start, FreshWindow(located.start, window.end, 0)
        return located.start, moved

    def _concept_holds(
        self, request: RetrainRequest, spec: Any, parent: Any, change: datetime,
        window: FreshWindow, span: trace.Span,
    ) -> bool:
        """A concept-only attempt's premise, checked with labels
        (:mod:`services.training.concept`): the champion's loss on the rows after the
        change point is higher than on those before it since its own training window
        (at most as long in event time). When it is not, the champion already fits the
        data after the change: the episode ends ``adapted`` with both losses, nothing is
        trained, and ``False`` is returned. Only an alarm on the online learner's own
        error is checked: manual requests, refinements, covariate episodes, episodes the
        champion watch alarmed in (its alarm is about the champion already) and a
        champion without a recorded training window: ``True``."""
        from services.features.feast_repo import load_layout
        from services.features.snapshot import build_training_frame
        from services.model.scoring import Scorer
        from services.training.concept import loss_rose

        book = self.control.book
        since = parent.manifest.lineage.window_end
        if (request.reason == "manual" or request.refinement
                or not concept_only(book, request) or champion_alarmed(book, request)
                or since is None or since >= change):
            return True
        layout = load_layout(self.store, request.model)
        start = max(since, change - (window.end - change))
        before, _ = build_training_frame(self.store, layout, start, change)
        after, _ = build_training_frame(self.store, layout, change, window.end)
        scorer = Scorer.from_loaded(parent)
        task = self.settings.model(request.model).task
        features = list(spec.names)

        def losses(frame: Any) -> Any:
            if frame.empty:
                return frame[spec.label].to_numpy(dtype=float)
            return task.batch_loss(frame[spec.label].to_numpy(), scorer.predict(frame[features]))

        check = loss_rose(losses(before), losses(after))
        span.add_event("concept.check", {
            "rose": check.rose, "before": check.before, "after": check.after,
            "before_rows": check.before_rows, "after_rows": check.after_rows,
            "p_value": check.p_value})
        if check.rose:
            return True
        detail = (f"the champion's loss did not rise after the change point: "
                  f"{check.describe(parent.version)}; it already fits the data after it")
        self.stats.adapted += 1
        span.set_attribute("driftloop.adapted", True)
        self._send_episode(episode_event(request, "adapted", datetime.now(UTC), detail=detail,
                                         evidence=[check.describe(parent.version)]))
        self.producer.flush()
        log.warning("%s: episode %s ends without training: %s", request.model,
                    request.episode, detail)
        return False

    def _settle(
        self, request: RetrainRequest, spec: Any, change: datetime, window: FreshWindow,
        span: trace.Span,
    ) -> tuple[datetime, FreshWindow, tuple[pd.DataFrame, int] | None]:
        """Move the attempt past a ramp still going (:mod:`services.training.settle`):
        while the newer half of the fresh rows drifts from the older half, start at the
        split (waiting, up to ``retrain.label_wait_s``, only when fewer than
        ``retrain.min_fresh_rows`` rows, or too few to check, lie after it); at most
        ``retrain.settle_rounds`` times. Not for manual requests, refinements,
        concept-only episodes (their features do not move) or a model with a declared
        cycle (its halves may lie in different phases).

        Returns the change point and window to train on, and the point-in-time join of
        that window when a check made it (the snapshot reuses it), else None."""
        from services.features.feast_repo import TIMESTAMP_COLUMN, load_layout
        from services.features.snapshot import build_training_frame
        from services.training.settle import MIN_HALF_ROWS, check_settled

        model_settings = self.settings.model(request.model)
        rounds = model_settings.retrain.settle_rounds
        if (rounds == 0 or request.reason == "manual" or request.refinement
                or model_settings.drift.seasonality is not None
                or concept_only(self.control.book, request)):
            return change, window, None
        layout = load_layout(self.store, request.model)
        for number in range(1, rounds + 1):
            if window.labelled < 2 * MIN_HALF_ROWS:  # too few to check: no join for it
                return change, window, None
            joined = build_training_frame(self.store, layout, window.start, window.end)
            frame = joined[0]
            settling = check_settled(frame, spec, model_settings.drift, TIMESTAMP_COLUMN)
            span.add_event("settle.check", {
                "round": number, "moving": settling.moving, "rows": len(frame),
                "drifted": ",".join(settling.drifted)})
            if not settling.moving or settling.split is None:
                return change, window, joined
            log.info("%s: the newer half of %d fresh rows drifted from the older (%s): the "
                     "data is still moving; starting at %s (round %d of %d)",
                     request.request_id, len(frame), ", ".join(settling.drifted),
                     settling.split.isoformat(), number, rounds)
            wanted = max(model_settings.retrain.min_fresh_rows, 2 * MIN_HALF_ROWS)
            counted = self._await_fresh_labels(request, settling.split, span, wanted=wanted)
            if counted is None:  # stopping: train (and be interrupted) on what is settled
                return change, window, joined
            moved = fresh_window(settling.split, *counted)
            if moved is None or not enough_rows(moved.labelled,
                                                model_settings.retrain.min_fresh_rows):
                return change, window, joined  # too few after the split: the last window
            change, window = settling.split, moved
        return change, window, None

    def _answer_insufficient(self, request: RetrainRequest, change: datetime, labelled: int,
                             span: trace.Span) -> None:
        """The attempt found too few labelled rows after the change: say so, then ask for
        the next attempt (or report the episode failed at the last one)."""
        retrain = self.settings.model(request.model).retrain
        detail = (f"{labelled} labelled rows after the change point "
                  f"{change.isoformat()}, {retrain.min_fresh_rows} wanted, "
                  f"after waiting {retrain.label_wait_s:g} s")
        self.stats.insufficient += 1
        span.set_attribute("driftloop.insufficient_data", True)
        log.warning("%s: attempt %d of episode %s: %s", request.model, request.attempt,
                    request.episode, detail)
        self._send_episode(episode_event(request, "insufficient_data", datetime.now(UTC),
                                         detail=detail))
        if request.refinement:  # the episode keeps its promotion
            return
        self._continue_episode(request, after_attempt(request.attempt, retrain.episode_attempts),
                               f"insufficient data ({detail})")

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
