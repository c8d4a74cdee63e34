"""Every pipeline metric has data, with its attributes, after the loop has run once.

The loop of ``test_trace_chain`` (ingest, drift, train, shadow in threads over the real
broker, Feast and registry) runs from drift to promotion; then the labels turn against
the new champion and its rollback watch moves ``champion`` back. Each service's
in-memory metric reader must then hold the instruments that docs/SRE.md lists for it
(and the SLIs built on them), with the attributes the queries group by.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from services.observability import attributes as attr
from services.observability.setup import InMemoryTelemetry
from streams.settings import Settings

sys.path.insert(0, str(Path(__file__).parent / "workers"))
from chain_loop import (
    MODEL,
    N_FIRST,
    N_SHADOW,
    Loop,
    live_frame,
    prepare,
    produce,
    run_to_promotion,
)

pytestmark = pytest.mark.integration

TOPIC = attr.MESSAGING_DESTINATION_NAME
GROUP = attr.MESSAGING_CONSUMER_GROUP_NAME


def _points(telemetry: InMemoryTelemetry, name: str, **attrs: Any) -> list[Any]:
    """Data points of ``name`` whose attributes include ``attrs`` (keys given verbatim)."""
    found = [p for a, p in telemetry.metric_points(name)
             if all(a.get(k) == v for k, v in attrs.items())]
    assert found, f"{name} has no point with {attrs}: {telemetry.metric_points(name)}"
    return found


def _total(telemetry: InMemoryTelemetry, name: str, **attrs: Any) -> float:
    """Sum of counter values (or histogram counts) over matching points."""
    return sum(getattr(p, "count", None) or getattr(p, "value", 0)
               for p in _points(telemetry, name, **attrs))


class _CheckpointAgeWatcher:
    """Collects the train service's metrics every few ms while training runs.

    ``driftloop.training.checkpoint_age`` is an observable gauge that reports a run
    only while it runs (about a second here), so the test reads it during the run.
    """

    def __init__(self, telemetry: InMemoryTelemetry) -> None:
        self.telemetry = telemetry
        self.seen: list[tuple[dict[str, Any], float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set() and not self.seen:
            self.seen = [(a, p.value) for a, p in
                         self.telemetry.metric_points("driftloop.training.checkpoint_age")]
            self._stop.wait(0.005)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_every_pipeline_metric_has_data_after_a_loop(settings: Settings, tmp_path: Path) -> None:
    world = prepare(settings, tmp_path)
    s = world.settings
    loop = Loop(world)
    loop.build()
    watcher = _CheckpointAgeWatcher(loop.telemetry["train"])
    shadow = loop.services["shadow"]
    try:
        run_to_promotion(loop, on_training=watcher.start)
        watcher.stop()
        # the world turns against the new champion: its live loss exceeds its shadow
        # estimate and the watch rolls it back
        produce(s, live_frame(N_FIRST + N_SHADOW, 500), flip_labels=True)
        loop.wait(lambda: any(getattr(e, "cause", None) == "rollback" for e in shadow.published),
                  60, "the rollback")
    finally:
        watcher.stop()
        loop.stop()
    ingest, drift, train, shade = (loop.telemetry[n] for n in ("ingest", "drift", "train",
                                                               "shadow"))
    spec = loop.services["drift"].monitors[MODEL].reference.spec
    request = loop.services["drift"].stats
    assert request.requests == 1

    # drift: per-feature PSI (every feature) and KS (numeric ones) per window, windows
    windows = _total(drift, "driftloop.drift.windows", **{attr.MODEL: MODEL})
    assert windows >= 3 and _total(drift, "driftloop.drift.windows",
                                   **{attr.MODEL: MODEL, attr.DRIFTED: True}) >= 2
    for feature in spec.features:
        labels = {attr.MODEL: MODEL, attr.FEATURE: feature.name}
        assert _total(drift, "driftloop.drift.psi", **labels) == windows
        _points(drift, "driftloop.drift.latest_psi", **labels)
        if feature.kind == "numeric":
            assert _total(drift, "driftloop.drift.ks_statistic", **labels) == windows
            _points(drift, "driftloop.drift.latest_ks_statistic", **labels)
    _points(drift, "driftloop.drift.drifted_share", **{attr.MODEL: MODEL})
    assert _total(drift, "driftloop.retrain.requests",
                  **{attr.MODEL: MODEL, attr.RETRAIN_REASON: "covariate"}) == 1

    # stream plumbing, per service: consumed per topic (and group), processing latency,
    # dead letters by source topic and reason (the dead-letter rate's two halves)
    features, labels = s.topic("features"), s.topic("labels")
    for telemetry, topics in ((ingest, (features, labels)), (drift, (features,)),
                              (train, (s.topic("retrain.requests"),)),
                              (shade, (features, labels, s.topic("models.candidates")))):
        for topic in topics:
            assert _total(telemetry, "driftloop.stream.consumed", **{TOPIC: topic}) > 0
            _points(telemetry, "driftloop.stream.process.duration", **{TOPIC: topic})
        group = next(iter(telemetry.metric_points("driftloop.stream.consumed")))[0][GROUP]
        assert group.endswith(("ingest", "drift", "train", "shadow")), group
    for telemetry in (ingest, drift, shade):
        assert _total(telemetry, "driftloop.stream.dead_letters",
                      **{TOPIC: features, attr.ERROR_TYPE: "not_json"}) == 1
    consumed = _total(ingest, "driftloop.stream.consumed", **{TOPIC: features})
    assert consumed >= N_FIRST + N_SHADOW + 1  # the rate's denominator counts the bad one

    # ingest: data freshness (event time to the store), per model
    fresh = _points(ingest, "driftloop.ingest.freshness_lag", **{attr.MODEL: MODEL})
    assert sum(p.count for p in fresh) >= 2 and all(p.sum > 0 for p in fresh)

    # training: success rate (started / completed), time to train, final loss, start
    # delay, checkpoints, registration latency, and the checkpoint age during the run
    assert _total(train, "driftloop.training.runs.started", **{attr.MODEL: MODEL}) == 1
    assert _total(train, "driftloop.training.runs.finished",
                  **{attr.MODEL: MODEL, attr.TRAINING_OUTCOME: "completed"}) == 1
    duration = _points(train, "driftloop.training.duration",
                       **{attr.MODEL: MODEL, attr.TRAINING_OUTCOME: "completed"})[0]
    assert duration.count == 1 and duration.sum > 0
    loss = _points(train, "driftloop.training.final_loss", **{attr.MODEL: MODEL})[0]
    assert loss.count == 1 and 0 < loss.sum < 1
    assert _total(train, "driftloop.training.start_delay", **{attr.MODEL: MODEL}) == 1
    assert _total(train, "driftloop.training.checkpoints", **{attr.MODEL: MODEL}) >= 1
    assert _total(train, "driftloop.retrain.registration_latency",
                  **{attr.MODEL: MODEL, attr.RETRAIN_REASON: "covariate"}) == 1
    request_id = next(sp for _, sp in loop.spans() if sp.name == "training run").attributes[
        "driftloop.request_id"]
    assert [a for a, _ in watcher.seen] == [{attr.MODEL: MODEL, attr.TRAINING_RUN_ID: request_id}]
    assert all(age >= 0 for _, age in watcher.seen)
    assert not train.metric_points("driftloop.training.checkpoint_age"), "run over: no series"

    # shadow: pairs, verdict and metric delta (candidate better: negative log-loss delta),
    # promotions and the rollback, and usefulness (promoted for a request / requested)
    assert _total(shade, "driftloop.shadow.pairs", **{attr.MODEL: MODEL}) >= 200
    verdict = {attr.MODEL: MODEL, attr.SHADOW_DECISION: "promote"}
    assert _total(shade, "driftloop.shadow.verdicts", **verdict) == 1
    _points(shade, "driftloop.shadow.metric_delta", **verdict, **{attr.DELTA_SIGN: "negative"})
    assert _points(shade, "driftloop.shadow.latest_metric_delta", **verdict)[0].value < 0
    for cause in ("shadow", "rollback"):
        assert _total(shade, "driftloop.model.promotions",
                      **{attr.MODEL: MODEL, attr.PROMOTION_CAUSE: cause}) == 1
    promoted = _total(shade, "driftloop.retrain.promotions",
                      **{attr.MODEL: MODEL, attr.RETRAIN_REASON: "covariate"})
    assert promoted / request.requests == 1.0  # retrain usefulness
    assert world.registry.get_alias(MODEL, "champion") == world.champion
