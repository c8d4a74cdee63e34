"""Every driftloop metric instrument, created once per meter with stable names and units.

Names follow the OpenTelemetry naming guidance: ``driftloop.<area>.<name>``, units in
UCUM (``s``, ``1``, ``{message}``), counters not suffixed ``_total`` (the Prometheus
exporter adds it), attributes low-cardinality. Dimensionless gauges carry no unit
(not ``1``), so their Prometheus name is the same whether scraped from the service or
from the collector (which appends ``_ratio`` to gauges in unit ``1``).
``docs/SRE.md`` lists each instrument with its Prometheus name and the SLO queries
built on it.

Services either call the ``record_*`` helpers (which keep attribute names consistent)
or use the instruments directly (``metrics.drift_windows.add(1, {...})``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from services.observability import attributes as attr

_PSI_BUCKETS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.0, 5.0)
_SHARE_BUCKETS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)
_FAST_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                3600.0)
_SLOW_SECONDS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
                 7200.0, 14400.0)
_LOSS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 100.0)
_DELTA_BUCKETS = (0.0, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class _FeatureDriftLike(Protocol):
    name: str
    psi: float
    ks_statistic: float | None


class _DriftReportLike(Protocol):
    model: str
    drifted: bool
    drifted_share: float

    @property
    def features(self) -> Iterable[_FeatureDriftLike]: ...


class CheckpointWatch:
    """Tracks one running training's last checkpoint time for the age gauge.

    Use as a context manager around the run: the gauge reports the run from entry
    (age counted from the start until the first checkpoint) until exit.
    """

    def __init__(self, registry: PipelineMetrics, model: str, run_id: str) -> None:
        self._registry = registry
        self.model = model
        self.run_id = run_id
        self.last_checkpoint = registry._clock()

    def checkpoint_written(self) -> None:
        """Call after each checkpoint is durably written."""
        self.last_checkpoint = self._registry._clock()
        self._registry.training_checkpoints.add(1, {attr.MODEL: self.model})

    def close(self) -> None:
        """Stop reporting this run (it finished or failed)."""
        self._registry._forget_watch(self)

    def __enter__(self) -> CheckpointWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PipelineMetrics:
    """All driftloop instruments on one meter.

    ``clock`` (wall seconds) only feeds the checkpoint-age gauge; tests may replace it.
    """

    def __init__(self, meter: Meter, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._watches: dict[int, CheckpointWatch] = {}
        self._watch_lock = threading.Lock()

        # drift monitor
        self.drift_psi = meter.create_histogram(
            "driftloop.drift.psi", unit="1",
            description="PSI of one feature in one closed window against the reference",
            explicit_bucket_boundaries_advisory=_PSI_BUCKETS)
        self.drift_ks_statistic = meter.create_histogram(
            "driftloop.drift.ks_statistic", unit="1",
            description="Two-sample KS statistic of one numeric feature in one window",
            explicit_bucket_boundaries_advisory=_SHARE_BUCKETS)
        self.drift_latest_psi = meter.create_gauge(
            "driftloop.drift.latest_psi", unit="",
            description="PSI of the feature in the latest closed window")
        self.drift_latest_ks_statistic = meter.create_gauge(
            "driftloop.drift.latest_ks_statistic", unit="",
            description="KS statistic of the feature in the latest closed window")
        self.drift_windows = meter.create_counter(
            "driftloop.drift.windows", unit="{window}",
            description="Windows evaluated, by model and whether the window drifted")
        self.drift_drifted_share = meter.create_histogram(
            "driftloop.drift.drifted_share", unit="1",
            description="Share of features that drifted in one window",
            explicit_bucket_boundaries_advisory=_SHARE_BUCKETS)

        # stream plumbing
        self.stream_consumed = meter.create_counter(
            "driftloop.stream.consumed", unit="{message}",
            description="Messages consumed, by topic and consumer group")
        self.stream_dead_letters = meter.create_counter(
            "driftloop.stream.dead_letters", unit="{message}",
            description="Messages sent to the dead-letter topic, by source topic and reason")
        self.stream_process_duration = meter.create_histogram(
            "driftloop.stream.process.duration", unit="s",
            description="Time to process one consumed batch, until its work is durable",
            explicit_bucket_boundaries_advisory=_FAST_SECONDS)

        # ingest
        self.ingest_freshness_lag = meter.create_histogram(
            "driftloop.ingest.freshness_lag", unit="s",
            description="Event time to ingestion into the feature store",
            explicit_bucket_boundaries_advisory=_LAG_SECONDS)

        # retrain requests
        self.retrain_requests = meter.create_counter(
            "driftloop.retrain.requests", unit="{request}",
            description="Retrain requests emitted, by model and reason")
        self.retrain_registration_latency = meter.create_histogram(
            "driftloop.retrain.registration_latency", unit="s",
            description="Retrain request time to the registered candidate",
            explicit_bucket_boundaries_advisory=_SLOW_SECONDS)
        self.retrain_promotions = meter.create_counter(
            "driftloop.retrain.promotions", unit="{promotion}",
            description="Promotions of candidates trained for a retrain request")

        # episodes: one per change of a model's data
        self.retrain_episodes = meter.create_counter(
            "driftloop.retrain.episodes", unit="{event}",
            description="Episode steps, by model and status (opened, joined, "
            "insufficient_data, retrying, failed)")

        # training
        self.training_runs_started = meter.create_counter(
            "driftloop.training.runs.started", unit="{run}",
            description="Training runs started (resumed runs count again)")
        self.training_runs_finished = meter.create_counter(
            "driftloop.training.runs.finished", unit="{run}",
            description="Training runs finished, by outcome (completed or failed)")
        self.training_duration = meter.create_histogram(
            "driftloop.training.duration", unit="s",
            description="Wall time of one training run, start to end",
            explicit_bucket_boundaries_advisory=_SLOW_SECONDS)
        self.training_start_delay = meter.create_histogram(
            "driftloop.training.start_delay", unit="s",
            description="Retrain request time to the start of its training run",
            explicit_bucket_boundaries_advisory=_SLOW_SECONDS)
        self.training_final_loss = meter.create_histogram(
            "driftloop.training.final_loss", unit="1",
            description="Best validation loss at the end of a completed run",
            explicit_bucket_boundaries_advisory=_LOSS_BUCKETS)
        self.training_checkpoints = meter.create_counter(
            "driftloop.training.checkpoints", unit="{checkpoint}",
            description="Checkpoints written and verified")
        self.training_checkpoint_age = meter.create_observable_gauge(
            "driftloop.training.checkpoint_age", callbacks=[self._observe_checkpoint_age],
            unit="s", description="Seconds since the running training last wrote a checkpoint")

        # shadow evaluation and promotions
        self.shadow_pairs = meter.create_counter(
            "driftloop.shadow.pairs", unit="{pair}",
            description="Champion/candidate loss pairs formed once a label arrived")
        self.shadow_verdicts = meter.create_counter(
            "driftloop.shadow.verdicts", unit="{verdict}",
            description="Shadow verdicts, by decision")
        # histograms take no negative values: the size goes in the histogram, the sign in
        # an attribute; the signed value of the latest verdict in a gauge
        self.shadow_metric_delta = meter.create_histogram(
            "driftloop.shadow.metric_delta", unit="1",
            description="|candidate loss - champion loss| at the verdict, sign and loss name "
            "as attributes",
            explicit_bucket_boundaries_advisory=_DELTA_BUCKETS)
        self.shadow_latest_metric_delta = meter.create_gauge(
            "driftloop.shadow.latest_metric_delta", unit="",
            description="Candidate loss minus champion loss at the latest verdict (loss name "
            "as attribute)")
        self.model_promotions = meter.create_counter(
            "driftloop.model.promotions", unit="{promotion}",
            description="Champion alias moves, by cause (shadow, rollback, manual)")

    # ------------------------------------------------------------ helpers

    def record_drift_report(self, report: _DriftReportLike) -> None:
        """Per-feature PSI/KS, the drifted share and the window count of one report."""
        model = report.model
        for feature in report.features:
            labels = {attr.MODEL: model, attr.FEATURE: feature.name}
            self.drift_psi.record(feature.psi, labels)
            self.drift_latest_psi.set(feature.psi, labels)
            if feature.ks_statistic is not None:
                self.drift_ks_statistic.record(feature.ks_statistic, labels)
                self.drift_latest_ks_statistic.set(feature.ks_statistic, labels)
        self.drift_drifted_share.record(report.drifted_share, {attr.MODEL: model})
        self.drift_windows.add(1, {attr.MODEL: model, attr.DRIFTED: bool(report.drifted)})

    def record_consumed(self, topic: str, group: str, count: int = 1) -> None:
        self.stream_consumed.add(count, {attr.MESSAGING_DESTINATION_NAME: topic,
                                         attr.MESSAGING_CONSUMER_GROUP_NAME: group})

    def record_dead_letter(self, topic: str, reason: str, count: int = 1) -> None:
        self.stream_dead_letters.add(count, {attr.MESSAGING_DESTINATION_NAME: topic,
                                             attr.ERROR_TYPE: reason})

    def record_process_duration(self, topic: str, group: str, seconds: float) -> None:
        self.stream_process_duration.record(seconds, {attr.MESSAGING_DESTINATION_NAME: topic,
                                                      attr.MESSAGING_CONSUMER_GROUP_NAME: group})

    def record_freshness(self, model: str, lag_seconds: float) -> None:
        self.ingest_freshness_lag.record(max(lag_seconds, 0.0), {attr.MODEL: model})

    def record_retrain_request(self, model: str, reason: str) -> None:
        self.retrain_requests.add(1, {attr.MODEL: model, attr.RETRAIN_REASON: reason})

    def record_episode(self, model: str, status: str) -> None:
        """A step of a model's episode (``failed``: the model stays unadapted)."""
        self.retrain_episodes.add(1, {attr.MODEL: model, attr.EPISODE_STATUS: status})

    def record_candidate_registered(self, model: str, reason: str, latency_seconds: float) -> None:
        """A candidate built for a retrain request is in the registry."""
        self.retrain_registration_latency.record(
            max(latency_seconds, 0.0), {attr.MODEL: model, attr.RETRAIN_REASON: reason})

    def record_training_started(self, model: str, start_delay_seconds: float | None = None) -> None:
        self.training_runs_started.add(1, {attr.MODEL: model})
        if start_delay_seconds is not None:
            self.training_start_delay.record(max(start_delay_seconds, 0.0), {attr.MODEL: model})

    def record_training_finished(
        self,
        model: str,
        outcome: str,
        duration_seconds: float,
        *,
        final_loss: float | None = None,
        error_type: str | None = None,
    ) -> None:
        """``outcome`` is ``completed`` or ``failed`` (then give ``error_type``)."""
        labels: dict[str, Any] = {attr.MODEL: model, attr.TRAINING_OUTCOME: outcome}
        self.training_duration.record(duration_seconds, labels)
        if error_type is not None:
            labels = {**labels, attr.ERROR_TYPE: error_type}
        self.training_runs_finished.add(1, labels)
        if final_loss is not None:
            self.training_final_loss.record(final_loss, {attr.MODEL: model})

    def track_checkpoints(self, model: str, run_id: str) -> CheckpointWatch:
        """Start reporting a running training's checkpoint age (close it when the run ends)."""
        watch = CheckpointWatch(self, model, run_id)
        with self._watch_lock:
            self._watches[id(watch)] = watch
        return watch

    def record_shadow_pairs(self, model: str, count: int = 1) -> None:
        self.shadow_pairs.add(count, {attr.MODEL: model})

    def record_verdict(self, model: str, decision: str, metric_delta: float, *,
                       loss_name: str) -> None:
        """``metric_delta`` = candidate metric minus champion metric (signed), in the loss
        ``loss_name`` of the model's task (``log_loss``, ``cross_entropy``,
        ``squared_error``): the deltas carry it, since their scales differ by task."""
        self.shadow_verdicts.add(1, {attr.MODEL: model, attr.SHADOW_DECISION: decision})
        labels = {attr.MODEL: model, attr.SHADOW_DECISION: decision, attr.LOSS_NAME: loss_name}
        self.shadow_latest_metric_delta.set(metric_delta, labels)
        sign = "positive" if metric_delta > 0 else "negative" if metric_delta < 0 else "zero"
        self.shadow_metric_delta.record(abs(metric_delta), {**labels, attr.DELTA_SIGN: sign})

    def record_promotion(self, model: str, cause: str, retrain_reason: str | None = None) -> None:
        """A champion change; ``retrain_reason`` when the new champion came from a request."""
        self.model_promotions.add(1, {attr.MODEL: model, attr.PROMOTION_CAUSE: cause})
        if retrain_reason is not None and cause == "shadow":
            self.retrain_promotions.add(1, {attr.MODEL: model,
                                            attr.RETRAIN_REASON: retrain_reason})

    # ------------------------------------------------------------ internals

    def _forget_watch(self, watch: CheckpointWatch) -> None:
        with self._watch_lock:
            self._watches.pop(id(watch), None)

    def _observe_checkpoint_age(self, options: CallbackOptions) -> Iterator[Observation]:
        now = self._clock()
        with self._watch_lock:
            watches = list(self._watches.values())
        for watch in watches:
            yield Observation(max(now - watch.last_checkpoint, 0.0),
                              {attr.MODEL: watch.model, attr.TRAINING_RUN_ID: watch.run_id})
