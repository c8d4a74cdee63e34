"""Online service over the real broker: learns joined events, requests a retrain on concept drift,
snapshots with offsets and resumes from the snapshot."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from river.datasets import synth

from services.featurespec import FeatureSpec, ModelSpec
from services.online.service import OnlineService
from services.online.state import OnlineState, SnapshotStore
from streams.consumer import ConsumerLoop
from streams.contracts import (
    FeatureEvent,
    LabelEvent,
    ModelCandidate,
    ModelPromotion,
    PairedTest,
    RetrainRequest,
    ShadowVerdict,
)
from streams.producer import EventProducer
from streams.settings import Settings

pytestmark = pytest.mark.integration

CATEGORICAL = ("elevel", "car", "zipcode")
NAMES = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")
SPEC = ModelSpec("agrawal", "id", tuple(
    FeatureSpec(n, "categorical" if n in CATEGORICAL else "numeric") for n in NAMES))
T0 = datetime(2026, 4, 1, tzinfo=UTC)
N, DRIFT_AT = 6000, 3000


def _publish(settings: Settings) -> None:
    stream = synth.ConceptDriftStream(
        stream=synth.Agrawal(classification_function=0, seed=0),
        drift_stream=synth.Agrawal(classification_function=4, seed=0),
        position=DRIFT_AT, width=100, seed=0,
    )
    with EventProducer(settings, "test") as producer:
        for i, (x, y) in enumerate(itertools.islice(stream, N)):
            at = T0 + timedelta(seconds=i)
            feats = {k: (str(v) if k in CATEGORICAL else float(v)) for k, v in x.items()}
            eid = f"ev{i}"
            producer.send(settings.topic("features"), FeatureEvent(
                event_id=eid, model="agrawal", entity_id=f"c{i % 50}", event_time=at,
                features=feats), f"c{i % 50}", span=False)
            producer.send(settings.topic("labels"), LabelEvent(
                event_id=eid, model="agrawal", label=float(y), event_time=at), f"c{i % 50}",
                span=False)
        producer.send(settings.topic("labels"), LabelEvent(
            event_id="bad", model="agrawal", label=3.0, event_time=T0), "x", span=False)


def _requests(settings: Settings) -> list[RetrainRequest]:
    got: list[RetrainRequest] = []

    def handle(batch: list) -> None:
        got.extend(b.event for b in batch)

    loop = ConsumerLoop(settings, group_id=f"{settings.topics.prefix}reader",
                        topics={settings.topic("retrain.requests"): RetrainRequest},
                        handle_batch=handle, service_name="reader")
    loop.run(until=lambda: bool(got), idle_timeout_s=15)
    return got


def test_concept_drift_becomes_one_retrain_request_and_state_survives_restart(
    settings: Settings, tmp_path: Path
) -> None:
    _publish(settings)
    store = SnapshotStore(tmp_path / "snap")
    service = OnlineService(settings, specs={"agrawal": SPEC}, store=store,
                            snapshot_every=2500, snapshot_interval_s=3600)
    learner = service.state.learners["agrawal"]
    service.run(until=lambda: learner.learned >= N and service.loop.stats.dead_lettered >= 1,
                idle_timeout_s=60)
    assert learner.learned == N
    assert service.loop.stats.dead_lettered == 1  # the non-binary label
    assert len(service.requests_sent) == 1
    request = service.requests_sent[0]
    assert request.reason == "concept" and request.model == "agrawal"
    assert T0 + timedelta(seconds=DRIFT_AT - 50) <= request.window_end
    assert request.window_end <= T0 + timedelta(seconds=DRIFT_AT + 400)

    on_topic = _requests(settings)
    assert [r.request_id for r in on_topic] == [request.request_id]

    # snapshots cover offsets; a restarted service resumes from the newest one
    snap = store.load_latest()
    assert snap is not None
    state, offsets, refused = snap
    assert isinstance(state, OnlineState) and refused == []
    assert state.learners["agrawal"].learned >= 5000
    assert sum(o for (t, _), o in offsets.items() if t == settings.topic("features")) >= 5000
    again = OnlineService(settings, specs={"agrawal": SPEC}, store=store)
    assert again.state.learners["agrawal"].learned == state.learners["agrawal"].learned
    assert again.triggers["agrawal"].in_flight == request.request_id
    again.stop()
    again.run()  # stopped before its first poll: closes its clients (no reconnect spam)

    # a shadow promotion names no request: the candidate event seen for that version maps
    # it to the request; a verdict for another request clears nothing
    third = OnlineService(settings, specs={"agrawal": SPEC}, store=store,
                          snapshot_interval_s=3600)
    trigger = third.triggers["agrawal"]
    verdicts = settings.topic("models.verdicts")
    _send(settings, "models.verdicts", _verdict(6, "another-request"))
    phase: dict[str, str | None] = {}

    def until() -> bool:
        if "other" not in phase and any(t == verdicts for t, _ in third.positions):
            phase["other"] = trigger.in_flight  # the other request's verdict was handled
            _send(settings, "models.candidates", ModelCandidate(
                event_id="cand-7", model="agrawal", version=7, parent_version=None,
                request_id=request.request_id, registry_uri="file:///nowhere",
                sha256="0" * 64))
        if "candidate" not in phase and third.state.requests.get("agrawal", {}).get(7):
            phase["candidate"] = trigger.in_flight
            _send(settings, "models.promotions", ModelPromotion(
                event_id="promotion-7", model="agrawal", new_champion=7, previous_champion=1,
                cause="shadow", promoted_at=T0))
        return "candidate" in phase and trigger.in_flight is None

    third.run(until=until, idle_timeout_s=30)
    assert phase["other"] == phase["candidate"] == request.request_id
    assert trigger.in_flight is None


def _send(settings: Settings, topic: str,
          event: ModelCandidate | ShadowVerdict | ModelPromotion) -> None:
    with EventProducer(settings, "test") as producer:
        producer.send(settings.topic(topic), event, "agrawal", span=False)


def _verdict(candidate: int, request_id: str | None) -> ShadowVerdict:
    return ShadowVerdict(
        event_id=f"verdict-{candidate}", model="agrawal", candidate=candidate, champion=1,
        samples=100, metric="log_loss", candidate_metric=0.6, champion_metric=0.5,
        test=PairedTest(method="t", statistic=0.0, p_value=1.0, mean_difference=0.0,
                        relative_improvement=0.0),
        decision="reject", reason="worse", decided_at=T0, request_id=request_id)
