"""``driftloop run drift``: every window of live features against the champion's snapshot.

The monitor consumes ``features`` in batches (a consumer group: instances split the
partitions) and keeps one open window per model, closed at ``max_events`` events or
``max_seconds`` of event time. Each closed window is compared with the champion's
reference profile (the pure core in :mod:`services.drift.stats` and
:mod:`services.drift.policy`; under a declared cycle, ``drift.seasonality``, with the
profile of the reference rows of the window's phase, named in the report's
``reference_phase``: :mod:`services.drift.comparison`), yields one ``drift.reports``
event, and feeds the model's :class:`~services.drift.trigger.RetrainTrigger`; when it
fires, a ``retrain.requests`` event goes out whose ``request_id`` is derived from the
model, the reference and the model's latest request on ``retrain.requests``
(:func:`~services.drift.report.episode_request_id`): a recomputed window, or another
replica alarming at the same moment, yields the same key, never a second retrain.

Episodes (see :mod:`services.episodes.book`): the request opens one (``episode_id`` =
its ``request_id``, an ``opened`` event on ``retrain.episodes``) and carries the change
point, the start of the first window of the alarming streak: the trainer's fresh data
begins there. While the model has an open episode (the online learner's, or one still
being retried) a complete streak asks for nothing: it joins the episode, and the first
time per episode that another detector's episode is joined its report ids go out as a
``joined`` event.
Input rules: an event of a model with no declared reference is dead-lettered
(``unknown_model``), one of a model without a champion yet is skipped; feature names
the model does not declare are ignored, and a declared feature that is absent, or not a
number where a number is expected, counts as missing in its window.

Delivery: offsets are committed only up to the first offset, per partition, of any
window still open, after the reports and requests of the closed ones were
acknowledged; a restarted monitor re-reads its open windows. Trigger state (the
streak of alarming windows) is this replica's own: it is saved under this replica's
``state_dir`` before each commit and never shared (replicas each have their own state
directory; losing it costs at most a streak restart). Every monitor
also reads ``retrain.requests``, ``retrain.episodes``, ``models.verdicts`` and
``models.promotions`` (:class:`~services.episodes.reader.ControlReader`: not as a group
member, all partitions, from the start) so that a covariate or manual request made by
another instance, or before a restart, counts as in flight and starts the cooldown (the
online learner's requests do not: their episode is joined, and once it closes with a
promotion this monitor is free to ask); a verdict clears it; a promotion switches the
model's reference to the new champion's training snapshot: the post-change data that
champion was adapted to.

Prediction drift (a model's ``drift.prediction``, off by default): when a model's
monitor starts or its reference switches, the champion is loaded from the registry and
scores its reference snapshot once; every closed window's events are then scored in
one call and compared (:mod:`services.drift.prediction`); the entry rides in the
window's report, and feeds the policy only with ``drift.prediction_in_policy``. A model
that cannot be loaded or scored is logged and reported without the entry.

Policy clock: windows are judged in event time (the window's end), so replays and
redeliveries decide the same way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from services.drift.comparison import WindowReference
from services.drift.policy import (
    DriftSettings,
    WindowVerdict,
    decide_window,
    evaluate_window,
    with_prediction,
)
from services.drift.prediction import (
    PredictionReference,
    build_prediction_reference,
    prediction_drift,
)
from services.drift.references import (
    FeastReferences,
    ModelReference,
    ReferenceProvider,
    UnknownModelError,
)
from services.drift.report import build_drift_report, episode_request_id, window_key
from services.drift.trigger import RetrainTrigger
from services.drift.window import ClosedWindow, WindowAccumulator, window_summaries
from services.episodes.reader import ControlReader
from services.files import write_atomic
from services.observability.setup import Telemetry
from services.runtime import StreamService
from streams.consumer import CommitPlan, Inbound, PartitionKey
from streams.contracts import (
    EpisodeEvent,
    FeatureDrift,
    FeatureEvent,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
    new_event_id,
)
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class _Recent:
    report_id: str
    start: datetime
    end: datetime


Predict = Any  # a callable: window frame -> Scorer.predict output


class PredictionSource(Protocol):
    """Loads what prediction drift needs: the champion's scoring function, its task and
    its scores on its reference snapshot."""

    def load(self, model: str, reference: ModelReference) -> tuple[Predict, Any, np.ndarray]:
        """``(predict, task, reference_scores)``; raises when it cannot."""
        ...


class RegistryPredictions:
    """The champion from the registry, its reference snapshot from Feast."""

    def __init__(self, settings: Settings, references: ReferenceProvider) -> None:
        self._settings = settings
        self._references = references

    def load(self, model: str, reference: ModelReference) -> tuple[Predict, Any, np.ndarray]:
        from services.features.snapshot import load_snapshot_frame
        from services.model.scoring import load_scorer
        from services.registry.store import ModelRegistry

        if reference.champion_version is None:
            raise LookupError(f"{model} has no champion version to score with")
        registry = getattr(self._references, "registry", None) or ModelRegistry(
            self._settings.registry_uri)
        scorer = load_scorer(registry, model, reference.champion_version)
        store = getattr(self._references, "store", None)
        if store is None:
            from services.features.feast_repo import open_store

            store = open_store(self._settings)
        frame = load_snapshot_frame(store, reference.snapshot_id)
        return scorer.predict, scorer.task, scorer.predict(frame[list(reference.spec.names)])


@dataclass
class ModelMonitor:
    """One model's reference, open window and trigger."""

    reference: ModelReference
    config: DriftSettings
    compare: WindowReference  # the whole profile, or per phase under a declared cycle
    window: WindowAccumulator
    trigger: RetrainTrigger
    recent: dict[str, _Recent] = field(default_factory=dict)
    last_event_at: float = 0.0
    prediction: PredictionReference | None = None
    predict: Predict | None = None


@dataclass
class MonitorStats:
    """Counters for tests and ``/healthz``."""

    windows: int = 0
    events_reported: int = 0
    drifted_windows: int = 0
    requests: int = 0
    joined: int = 0
    skipped_no_reference: int = 0
    reference_switches: int = 0


class DriftMonitor(StreamService):
    """The drift monitor's Kafka loop around the pure drift core."""

    name = "drift"

    def __init__(
        self,
        settings: Settings,
        *,
        telemetry: Telemetry | None = None,
        references: ReferenceProvider | None = None,
        group_id: str = "driftloop-drift",
        batch_size: int = 10_000,
        predictions: PredictionSource | None = None,
    ) -> None:
        super().__init__(
            settings, group_id=group_id,
            topics={settings.topic("features"): FeatureEvent},
            telemetry=telemetry, batch_size=batch_size,
        )
        self.references: ReferenceProvider = references or FeastReferences(settings)
        self.monitors: dict[str, ModelMonitor] = {}
        self.predictions: PredictionSource = predictions or RegistryPredictions(
            settings, self.references)
        self._no_reference: set[str] = set()
        self._positions: dict[PartitionKey, int] = {}
        self._state_dir = Path(settings.state_dir) / "drift"
        self._control = ControlReader(
            settings, topics=("retrain.requests", "retrain.episodes", "models.verdicts",
                              "models.promotions"), name="drift-control")
        self._requests: dict[str, RetrainRequest] = {}  # attempt-1 requests by id
        self._last_request: dict[str, str] = {}  # model -> its latest request id
        self._verdicts: list[ShadowVerdict] = []
        self._joined: set[str] = set()  # episodes this monitor attached evidence to
        self.stats = MonitorStats()

    # -- models -----------------------------------------------------------------------

    def _monitor(self, model: str) -> ModelMonitor | None:
        monitor = self.monitors.get(model)
        if monitor is not None or model in self._no_reference:
            return monitor
        reference = self.references.reference_for(model)
        if reference is None:
            log.warning("%s has no champion yet: its events are not monitored", model)
            self._no_reference.add(model)
            return None
        config = self.settings.model(model).drift
        monitor = ModelMonitor(
            reference=reference, config=config, compare=_window_reference(reference, config),
            window=WindowAccumulator(reference.spec, config.window_events, config.window_seconds),
            trigger=self._load_trigger(model, config),
        )
        self._load_prediction(model, monitor)
        self.monitors[model] = monitor
        self._apply_control(model)
        return monitor

    def _switch_reference(self, model: str) -> None:
        """A promotion happened: compare with the new champion's snapshot from now on."""
        self._no_reference.discard(model)
        monitor = self.monitors.get(model)
        if monitor is None:
            return
        reference = self.references.reference_for(model)
        if reference is None or reference.snapshot_id == monitor.reference.snapshot_id:
            return
        monitor.reference = reference
        monitor.compare = _window_reference(reference, monitor.config)
        self._load_prediction(model, monitor)
        monitor.trigger.state.streak_windows.clear()
        self.stats.reference_switches += 1
        log.info("%s: reference switched to snapshot %s (champion v%s)", model,
                 reference.snapshot_id, reference.champion_version)

    def _load_prediction(self, model: str, monitor: ModelMonitor) -> None:
        """Score the champion's reference snapshot once (``drift.prediction`` on)."""
        monitor.prediction = monitor.predict = None
        if not monitor.config.prediction:
            return
        reference = monitor.reference
        try:
            predict, task, scores = self.predictions.load(model, reference)
            monitor.prediction = build_prediction_reference(
                model, task, scores, reference.snapshot_id,
                champion_version=reference.champion_version, ks_method=monitor.config.ks_method)
            monitor.predict = predict
        except Exception as exc:  # a model that cannot be scored is reported without it
            log.warning("%s: prediction drift off for champion v%s: %s", model,
                        reference.champion_version, exc)

    def _prediction_entry(self, model: str, monitor: ModelMonitor,
                          window: ClosedWindow) -> FeatureDrift | None:
        """The window's prediction-drift entry, or ``None`` (off, or scoring failed)."""
        if monitor.prediction is None or monitor.predict is None:
            return None
        spec = monitor.reference.spec
        frame = pd.DataFrame(window.numeric, columns=[f.name for f in spec.numeric])
        for name, values in window.categorical.items():
            frame[name] = values
        try:
            scores = monitor.predict(frame)
            return prediction_drift(monitor.prediction, scores, monitor.config)
        except Exception as exc:  # never let one window's scoring stop the monitor
            log.warning("%s: prediction drift skipped for a window: %s", model, exc)
            return None

    # -- trigger state ----------------------------------------------------------------

    def _trigger_path(self, model: str) -> Path:
        return self._state_dir / f"{model}.trigger.json"

    def _load_trigger(self, model: str, config: DriftSettings) -> RetrainTrigger:
        try:
            text = self._trigger_path(model).read_text()
        except FileNotFoundError:
            return RetrainTrigger(config.trigger_config())
        return RetrainTrigger.from_state_json(text, config.trigger_config())

    def _save_triggers(self) -> None:
        self._state_dir.mkdir(parents=True, exist_ok=True)
        for model, monitor in self.monitors.items():
            write_atomic(self._trigger_path(model), monitor.trigger.state_json())

    def _apply_control(self, model: str | None = None) -> None:
        """Fold requests, verdicts and promotions seen on the control topics in.

        Attempt-1 requests of this monitor's kind (``covariate``, from another replica or
        before a restart) and manual ones count as in flight and start the cooldown, as
        if this trigger had fired them; the online learner's ``concept`` requests and
        retries do not: the episode book keeps their episode open, and the windows that
        alarm meanwhile join it (see :meth:`_decide`)."""
        for event in self._control.drain():
            if isinstance(event, RetrainRequest):
                self._last_request[event.model] = event.request_id
                if event.attempt != 1 or event.reason == "concept":
                    continue
                self._requests[event.request_id] = event
                target = self.monitors.get(event.model)
                if target is not None:
                    target.trigger.record_request(event.request_id, event.window_end)
            elif isinstance(event, ShadowVerdict):
                self._verdicts.append(event)
                del self._verdicts[:-1000]
            elif isinstance(event, ModelPromotion):
                self._switch_reference(event.model)
        if model is not None:  # a model seen for the first time: replay what is known
            monitor = self.monitors[model]
            for request in self._requests.values():
                if request.model == model:
                    monitor.trigger.record_request(request.request_id, request.window_end)
        for verdict in self._verdicts:
            monitor = self.monitors.get(verdict.model)
            if monitor is None or monitor.trigger.in_flight is None:
                continue
            if verdict.request_id is not None:
                monitor.trigger.clear_in_flight(verdict.request_id)

    # -- the loop ---------------------------------------------------------------------

    def run(self, **bounds: Any) -> Any:
        try:
            return super().run(**bounds)
        finally:
            self._control.close()

    def handle_batch(self, batch: list[Inbound[Any]]) -> CommitPlan | None:
        self._apply_control()
        now = time.monotonic()
        if not batch:
            self._flush_idle(now)
        # Hot loop (hundreds of thousands of events/s): locals bound once, one C call per
        # message field, a known model's monitor taken straight from the dict.
        positions = self._positions
        monitors = self.monitors
        for inbound in batch:
            msg = inbound.message
            event: FeatureEvent = inbound.event
            topic = msg.topic()
            partition = msg.partition()
            offset = msg.offset()
            positions[(topic, partition)] = offset + 1
            model = event.model
            monitor = monitors.get(model)
            if monitor is None:
                try:
                    monitor = self._monitor(model)
                except UnknownModelError as exc:
                    self.loop.dead_letter(msg, "unknown_model", str(exc))
                    continue
                if monitor is None:
                    self.stats.skipped_no_reference += 1
                    continue
            monitor.last_event_at = now
            closed = monitor.window.add(event.event_time, event.features, topic,
                                        partition, offset)
            if closed is not None:
                self._evaluate(model, monitor, closed, inbound)
        if batch:
            self._save_triggers()
        return self._commit_plan()

    def _commit_plan(self) -> CommitPlan:
        plan = dict(self._positions)
        for monitor in self.monitors.values():
            for key, first in monitor.window.open_first_offsets().items():
                if key in plan and first < plan[key]:
                    plan[key] = first
        return plan

    def on_revoke(self, partitions: list[PartitionKey]) -> CommitPlan | None:
        """Partitions leave: commit what is durable; open windows are rebuilt by the new
        owner from the uncommitted offsets, so this member drops them."""
        plan = {k: v for k, v in self._commit_plan().items() if k in partitions}
        for monitor in self.monitors.values():
            monitor.window = WindowAccumulator(monitor.reference.spec,
                                               monitor.config.window_events,
                                               monitor.config.window_seconds)
        for key in partitions:
            self._positions.pop(key, None)
        return plan

    def _flush_idle(self, now: float) -> None:
        """A stream that went quiet still gets its last window reported."""
        for model, monitor in self.monitors.items():
            idle = monitor.config.idle_flush
            if monitor.window.n_open and now - monitor.last_event_at >= idle:
                closed = monitor.window.flush()
                if closed is not None:
                    self._evaluate(model, monitor, closed, None)
                    self._save_triggers()

    def flush_windows(self) -> None:
        """Close every open window now (idle streams, end of a replay, tests)."""
        for model, monitor in self.monitors.items():
            closed = monitor.window.flush()
            if closed is not None:
                self._evaluate(model, monitor, closed, None)
        self.producer.flush()

    # -- one window -------------------------------------------------------------------

    def _evaluate(self, model: str, monitor: ModelMonitor, window: ClosedWindow,
                  inbound: Inbound[Any] | None) -> None:
        reference = monitor.reference
        key = window_key(window.bounds)
        bounds = window.bounds
        with self.tracer.start_as_current_span(
            "drift window evaluation",
            attributes={
                "driftloop.model": model,
                "driftloop.window.start": bounds.start_time.isoformat(),
                "driftloop.window.end": bounds.end_time.isoformat(),
                "driftloop.window.events": bounds.n_events,
                "driftloop.reference_snapshot_id": reference.snapshot_id,
            },
        ) as span:
            compare = monitor.compare.for_window(bounds.start_time, bounds.end_time)
            stats = compare.engine.compute(window.numeric, window.categorical)
            verdict = evaluate_window(stats, reference.spec, monitor.config)
            prediction = self._prediction_entry(model, monitor, window)
            verdict = with_prediction(verdict, prediction and prediction.drifted,
                                      monitor.config)
            report = build_drift_report(
                model, bounds, verdict, reference.snapshot_id,
                champion_version=reference.champion_version,
                invalid=window.invalid_by_feature,
                reference_summaries=compare.summaries,
                window_summaries=window_summaries(window, reference.spec),
                prediction=prediction, reference_phase=compare.phase,
            )
            span.set_attributes({
                "driftloop.report_id": report.event_id,
                "driftloop.drifted": report.drifted,
                "driftloop.drifted_features": list(verdict.drifted_features),
                "driftloop.drifted_share": report.drifted_share,
                **({"driftloop.reference_phase": compare.phase} if compare.phase else {}),
            })
            self.producer.send(self.settings.topic("drift.reports"), report, key=model)
            self.metrics.record_drift_report(report)
            self.stats.windows += 1
            self.stats.events_reported += bounds.n_events
            self.stats.drifted_windows += int(report.drifted)
            monitor.recent[key] = _Recent(report.event_id, bounds.start_time, bounds.end_time)
            self._decide(model, monitor, key, verdict, report.event_id, bounds.end_time,
                         bounds.n_events)

    def _decide(self, model: str, monitor: ModelMonitor, key: str, verdict: WindowVerdict,
                report_id: str, window_end: datetime, n_events: int) -> None:
        reference = monitor.reference
        request_id = episode_request_id(model, reference.snapshot_id,
                                        self._last_request.get(model))
        episode = self._control.book.open_episode(model, now=datetime.now(UTC))
        decision = decide_window(monitor.trigger, monitor.config, verdict, n_events=n_events,
                                 window_end=window_end, window_id=key, request_id=request_id,
                                 open_episode=episode.episode_id if episode else None)
        if decision.outcome == "too_small":
            return
        windows = [monitor.recent[w] for w in decision.streak_windows if w in monitor.recent]
        if decision.outcome == "joined" and episode is not None:
            self._join(model, episode, windows or [_Recent(report_id, window_end, window_end)])
        if not decision.fire:
            if len(monitor.recent) > 4 * monitor.config.consecutive_windows:
                for old in list(monitor.recent)[: -2 * monitor.config.consecutive_windows]:
                    monitor.recent.pop(old, None)
            return
        report_ids = [w.report_id for w in windows] or [report_id]
        # The change began with the first window of the alarming streak: the trainer's
        # fresh data starts there.
        change_point = min((w.start for w in windows), default=window_end)
        with self.tracer.start_as_current_span(
            "retrain decision",
            attributes={
                "driftloop.model": model,
                "driftloop.request_id": request_id,
                "driftloop.episode_id": request_id,
                "driftloop.reason": "covariate",
                "driftloop.decision": decision.reason,
                "driftloop.report_ids": report_ids,
                "driftloop.change_point": change_point.isoformat(),
            },
        ):
            now = datetime.now(UTC)
            request = RetrainRequest(
                event_id=new_event_id(), request_id=request_id, model=model,
                reason="covariate", base_version=reference.champion_version,
                window_start=change_point, window_end=window_end,
                drift_report_ids=report_ids, requested_at=now,
                change_point=change_point, episode_id=request_id, attempt=1,
            )
            self.producer.send(self.settings.topic("retrain.requests"), request, key=model)
            self.producer.send(self.settings.topic("retrain.episodes"), EpisodeEvent(
                event_id=new_event_id(), episode_id=request_id, model=model,
                status="opened", request_id=request_id, detector="drift",
                reason="covariate", change_point=change_point, evidence=report_ids,
                detail=decision.reason, at=now,
            ), key=model)
        self._last_request[model] = request_id
        self.metrics.record_retrain_request(model, "covariate")
        self.metrics.record_episode(model, "opened")
        self.stats.requests += 1
        log.info("%s: retrain request %s (%s); change point %s", model, request_id,
                 decision.reason, change_point.isoformat())

    def _join(self, model: str, episode: Any, windows: list[_Recent]) -> None:
        """Attach an alarming streak to another detector's open episode, once per
        episode (this monitor's own episode needs no evidence from itself)."""
        if episode.detector == "drift" or episode.episode_id in self._joined:
            return
        self._joined.add(episode.episode_id)
        report_ids = [w.report_id for w in windows]
        start = min(w.start for w in windows)
        self.producer.send(self.settings.topic("retrain.episodes"), EpisodeEvent(
            event_id=new_event_id(), episode_id=episode.episode_id, model=model,
            status="joined", detector="drift", reason="covariate", change_point=start,
            evidence=report_ids, at=datetime.now(UTC),
            detail=f"{len(report_ids)} drifted windows from {start.isoformat()}",
        ), key=model)
        self.metrics.record_episode(model, "joined")
        self.stats.joined += 1
        log.info("%s: drifted windows joined open episode %s (%s)", model,
                 episode.episode_id, episode.reason)


def _window_reference(reference: ModelReference, config: DriftSettings) -> WindowReference:
    """What the model's windows are compared with (per phase under a declared cycle)."""
    return WindowReference(reference.profile, reference.spec, ks_method=config.ks_method,
                           seasonality=config.seasonality, rows=reference.rows)


def build(settings: Settings) -> DriftMonitor:
    """Factory for ``driftloop run drift``."""
    return DriftMonitor(settings)
