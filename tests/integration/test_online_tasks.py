"""A multiclass model's online learner over the real broker: labels that are not one of
its classes are dead-lettered (``invalid_value``) while the loop learns the rest; its
gauges, ``/predict`` answer and snapshot follow the task; a changed task starts afresh."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer

from services.observability.setup import in_memory_telemetry
from services.online.join import Joined
from services.online.service import build
from streams.contracts import FeatureEvent, LabelEvent
from streams.deadletter import DETAIL_HEADER, REASON_HEADER
from streams.producer import EventProducer
from streams.settings import Settings
from streams.tracing import header_value

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MODEL = "tri"
CLASSES = [3, 7, 9]
SPEC = {"entity": "id", "features": [{"name": "x0"}, {"name": "x1"},
                                     {"name": "shop", "kind": "categorical"}]}
T0 = datetime(2026, 4, 1, tzinfo=UTC)
N = 900
BAD = {"bad-1": 4.0, "bad-2": 7.5}  # not a declared class / not an integer


def _publish(settings: Settings) -> None:
    """Three classes around three centres (the shop hints at the class too)."""
    rng = random.Random(3)
    centres = {3: (0.0, 0.0), 7: (3.0, 0.0), 9: (0.0, 3.0)}
    with EventProducer(settings, "test") as producer:
        for i in range(N):
            c = rng.choice(CLASSES)
            at, key = T0 + timedelta(seconds=i), f"c{i % 20}"
            feats = {"x0": centres[c][0] + rng.gauss(0, 0.6),
                     "x1": centres[c][1] + rng.gauss(0, 0.6),
                     "shop": f"s{c}" if rng.random() < 0.5 else "other"}
            producer.send(settings.topic("features"), FeatureEvent(
                event_id=f"ev{i}", model=MODEL, entity_id=key, event_time=at,
                features=feats), key, span=False)
            producer.send(settings.topic("labels"), LabelEvent(
                event_id=f"ev{i}", model=MODEL, label=float(c), event_time=at), key,
                span=False)
        for event_id, label in BAD.items():
            producer.send(settings.topic("labels"), LabelEvent(
                event_id=event_id, model=MODEL, label=label, event_time=T0), "x", span=False)


def _dead_letters(settings: Settings, count: int) -> list[tuple[str, str]]:
    consumer = Consumer(settings.kafka.consumer_config(f"raw-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic("deadletter")])
    got: list[tuple[str, str]] = []
    try:
        for _ in range(40):
            for m in consumer.consume(100, timeout=0.5):
                if m.error() is None:
                    h = m.headers()
                    got.append((header_value(h, REASON_HEADER), header_value(h, DETAIL_HEADER)))
            if len(got) >= count:
                break
    finally:
        consumer.close()
    return got


def _with_task(settings: Settings, task: Any) -> Settings:
    return settings.with_models({MODEL: {"task": task, "online": {"spec": SPEC}}})


def test_a_multiclass_learner_over_the_broker(settings: Settings) -> None:
    multi = _with_task(settings, {"kind": "multiclass", "classes": CLASSES})
    _publish(multi)
    telemetry = in_memory_telemetry("online-tasks")
    service = build(multi, snapshot_every=10 * N, snapshot_interval_s=3600, telemetry=telemetry)
    learner = service.state.learners[MODEL]
    gauges: dict[str, list] = {}

    def done() -> bool:  # the gauges report while the service runs
        if learner.learned < N or service.loop.stats.dead_lettered < len(BAD):
            return False
        for name in ("rolling_accuracy", "rolling_cross_entropy", "rolling_log_loss",
                     "rolling_roc_auc", "rolling_mae"):
            gauges[name] = telemetry.metric_points(f"driftloop.online.{name}")
        return True

    service.run(until=done, idle_timeout_s=40)

    assert learner.learned == N and service.loop.stats.dead_lettered == len(BAD)
    letters = sorted(_dead_letters(multi, len(BAD)))
    assert letters == [
        ("invalid_value", "label: a label is one of the classes [3, 7, 9], got 4.0"),
        ("invalid_value", "label: a label is one of the classes [3, 7, 9], got 7.5"),
    ]
    metrics = learner.metrics()
    assert metrics["rolling_accuracy"] > 0.8  # one class in three by chance
    assert [p.value for _, p in gauges["rolling_cross_entropy"]] == [
        pytest.approx(metrics["rolling_cross_entropy"])]
    assert len(gauges["rolling_accuracy"]) == 1
    assert gauges["rolling_log_loss"] == gauges["rolling_roc_auc"] == gauges["rolling_mae"] == []

    # /predict answers every declared class and the most probable one
    body = json.dumps({"model": MODEL, "features": {"x0": 3.0, "x1": 0.0, "shop": "s7"}})
    code, doc = service.predict_http(body.encode())
    assert code == 200, doc
    online = doc["online"]
    assert online["learned"] == N and list(online["probabilities"]) == ["3", "7", "9"]
    assert online["label"] == 7 and online["probabilities"]["7"] > 0.5
    assert sum(online["probabilities"].values()) == pytest.approx(1.0)

    # the snapshot restores the multiclass learner; a changed task starts a fresh one
    service.snapshot()
    again = build(multi, telemetry=in_memory_telemetry("online-tasks"))
    restored = again.state.learners[MODEL]
    assert restored.task == learner.task and restored.learned == N
    probe = {"x0": 0.2, "x1": 2.5, "shop": "other"}
    assert restored.predict(probe) == pytest.approx(learner.predict(probe))
    changed = build(_with_task(settings, "binary"), telemetry=in_memory_telemetry("t"))
    fresh = changed.state.learners[MODEL]
    assert fresh.task.kind == "binary" and fresh.learned == 0
    # a label joined under the former task (pending in the snapshot) is dropped, not learned
    stale = Joined("ev-old", MODEL, probe, 7.0, T0, T0)
    changed._learn(MODEL, [(stale, None)])  # type: ignore[list-item]
    assert fresh.learned == 0
    for s in (again, changed):
        s.stop()
        s.run()  # stopped before its first poll: closes its clients
