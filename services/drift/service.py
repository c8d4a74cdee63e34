"""``driftloop run drift``: every window of live features against the champion's snapshot.

The monitor consumes ``features`` in batches (a consumer group: instances split the
partitions) and keeps one open window per model, closed at ``max_events`` events or
``max_seconds`` of event time. Each closed window is compared with the champion's
reference profile (the pure core in :mod:`services.drift.stats` and
:mod:`services.drift.policy`), yields one ``drift.reports`` event, and feeds the
model's :class:`~services.drift.trigger.RetrainTrigger`; when it fires, a
``retrain.requests`` event goes out whose ``request_id`` is derived from the model,
the reference and the model's latest request on ``retrain.requests``
(:func:`~services.drift.report.episode_request_id`): a recomputed window, or another
replica alarming at the same moment, yields the same key, never a second retrain.
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
also reads ``retrain.requests``, ``models.verdicts`` and ``models.promotions`` (not
as a group member: all partitions, from the start) so that a request made by another
instance, or before a restart, counts as in flight and starts the cooldown; a
verdict clears it; a promotion switches the model's reference to the new champion's
training snapshot.

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
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

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
from services.drift.profile import profile_summaries
from services.drift.references import (
    FeastReferences,
    ModelReference,
    ReferenceProvider,
    UnknownModelError,
)
from services.drift.report import build_drift_report, episode_request_id, window_key
from services.drift.stats import WindowStatsEngine
from services.drift.trigger import RetrainTrigger
from services.drift.window import ClosedWindow, WindowAccumulator, window_summaries
from services.files import write_atomic
from services.observability.setup import Telemetry
from services.runtime import StreamService
from streams.codec import DecodeFailure, decode
from streams.consumer import CommitPlan, Inbound, PartitionKey
from streams.contracts import (
    FeatureDrift,
    FeatureEvent,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
    Summary,
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
    engine: WindowStatsEngine
    window: WindowAccumulator
    trigger: RetrainTrigger
    recent: dict[str, _Recent] = field(default_factory=dict)
    last_event_at: float = 0.0
    summaries: dict[str, Summary] = field(default_factory=dict)  # the reference's
    prediction: PredictionReference | None = None
    predict: Predict | None = None


@dataclass
class MonitorStats:
    """Counters for tests and ``/healthz``."""

    windows: int = 0
    events_reported: int = 0
    drifted_windows: int = 0
    requests: int = 0
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
        self._control = _ControlReader(settings)
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
            reference=reference, config=config,
            engine=WindowStatsEngine(reference.profile, reference.spec,
                                     ks_method=config.ks_method),
            window=WindowAccumulator(reference.spec, config.window_events, config.window_seconds),
            trigger=self._load_trigger(model, config),
            summaries=profile_summaries(reference.profile),
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
        monitor.engine = WindowStatsEngine(reference.profile, reference.spec,
                                           ks_method=monitor.config.ks_method)
        monitor.summaries = profile_summaries(reference.profile)
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
        """Fold requests, verdicts and promotions seen on the control topics in."""
        for event in self._control.drain():
            if isinstance(event, RetrainRequest):
                self._control.requests[event.request_id] = event
                self._control.last_request[event.model] = event.request_id
                target = self.monitors.get(event.model)
                if target is not None:
                    target.trigger.record_request(event.request_id, event.window_end)
            elif isinstance(event, ShadowVerdict):
                self._control.verdicts.append(event)
                del self._control.verdicts[:-1000]
            elif isinstance(event, ModelPromotion):
                self._switch_reference(event.model)
        if model is not None:  # a model seen for the first time: replay what is known
            monitor = self.monitors[model]
            for request in self._control.requests.values():
                if request.model == model:
                    monitor.trigger.record_request(request.request_id, request.window_end)
        for verdict in self._control.verdicts:
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
            stats = monitor.engine.compute(window.numeric, window.categorical)
            verdict = evaluate_window(stats, reference.spec, monitor.config)
            prediction = self._prediction_entry(model, monitor, window)
            verdict = with_prediction(verdict, prediction and prediction.drifted,
                                      monitor.config)
            report = build_drift_report(
                model, bounds, verdict, reference.snapshot_id,
                champion_version=reference.champion_version,
                invalid=window.invalid_by_feature,
                reference_summaries=monitor.summaries,
                window_summaries=window_summaries(window, reference.spec),
                prediction=prediction,
            )
            span.set_attributes({
                "driftloop.report_id": report.event_id,
                "driftloop.drifted": report.drifted,
                "driftloop.drifted_features": list(verdict.drifted_features),
                "driftloop.drifted_share": report.drifted_share,
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
                                        self._control.last_request.get(model))
        decision = decide_window(monitor.trigger, monitor.config, verdict, n_events=n_events,
                                 window_end=window_end, window_id=key, request_id=request_id)
        if decision.outcome == "too_small":
            return
        if not decision.fire:
            if len(monitor.recent) > 4 * monitor.config.consecutive_windows:
                for old in list(monitor.recent)[: -2 * monitor.config.consecutive_windows]:
                    monitor.recent.pop(old, None)
            return
        windows = [monitor.recent[w] for w in decision.streak_windows if w in monitor.recent]
        with self.tracer.start_as_current_span(
            "retrain decision",
            attributes={
                "driftloop.model": model,
                "driftloop.request_id": request_id,
                "driftloop.reason": "covariate",
                "driftloop.decision": decision.reason,
                "driftloop.report_ids": [w.report_id for w in windows] or [report_id],
            },
        ):
            request = RetrainRequest(
                event_id=new_event_id(), request_id=request_id, model=model,
                reason="covariate", base_version=reference.champion_version,
                window_start=min((w.start for w in windows), default=window_end),
                window_end=window_end,
                drift_report_ids=[w.report_id for w in windows] or [report_id],
                requested_at=datetime.now(UTC),
            )
            self.producer.send(self.settings.topic("retrain.requests"), request, key=model)
        self._control.last_request[model] = request_id
        self.metrics.record_retrain_request(model, "covariate")
        self.stats.requests += 1
        log.info("%s: retrain request %s (%s)", model, request_id, decision.reason)


class _ControlReader:
    """Reads the control topics (requests, verdicts, promotions) in full, without a group.

    Every monitor instance needs every request and promotion of every model, whatever
    partitions of ``features`` it owns.
    """

    def __init__(self, settings: Settings) -> None:
        self._types = {
            settings.topic("retrain.requests"): RetrainRequest,
            settings.topic("models.verdicts"): ShadowVerdict,
            settings.topic("models.promotions"): ModelPromotion,
        }
        self._settings = settings
        self._consumer: Consumer | None = None
        self.requests: dict[str, RetrainRequest] = {}
        self.last_request: dict[str, str] = {}
        """Per model, the id of its latest request in topic order (one partition each)."""
        self.verdicts: list[ShadowVerdict] = []

    def _open(self) -> Consumer:
        """Assign every partition from the start and wait for what is there now."""
        config = self._settings.kafka.consumer_config(f"driftloop-drift-control-{uuid.uuid4()}")
        consumer = Consumer(config)
        metadata = consumer.list_topics(timeout=10)
        assignment = [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in self._types
            if topic in metadata.topics
            for p in metadata.topics[topic].partitions
        ]
        consumer.assign(assignment)
        return consumer

    def drain(self) -> list[Any]:
        """Events that arrived since the last call (non-blocking after the first)."""
        timeout = 0.0
        if self._consumer is None:
            self._consumer = self._open()
            timeout = 1.0  # the first call catches up with the history
        events: list[Any] = []
        while True:
            messages = self._consumer.consume(num_messages=1000, timeout=timeout)
            if not messages:
                return events
            for msg in messages:
                if msg.error() is not None:
                    continue
                try:
                    events.append(decode(msg.value(), self._types[msg.topic()]))
                except DecodeFailure:
                    continue  # the control topics' own consumers dead-letter these

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def build(settings: Settings) -> DriftMonitor:
    """Factory for ``driftloop run drift``."""
    return DriftMonitor(settings)
