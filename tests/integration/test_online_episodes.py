"""The online learner's side of episodes, over the real broker.

A concept change (Agrawal function 0 -> 4 at event 3,000, event times one second apart,
labels 2 minutes after their features, all under one key so the backlog is learned in event
order). With an episode already open for the model (a drift monitor's request on
``retrain.requests``), the detection joins it: a ``joined`` event on
``retrain.episodes`` and no concept request. Without one: exactly one concept request,
attempt 1 of its own episode, whose ``change_point`` is near the true change (the
learner's cut mapped to feature event times), with an ``opened`` event.

Bugs caught: a second request for a change whose episode is open; a change point taken
as "detection minus 10 minutes" or as the detecting label's time; the label time used
where the feature time is known; a request without its episode fields or opened event.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from river.datasets import synth
from samples.topic_reader import read_control

from services.observability.setup import in_memory_telemetry
from services.online.service import build
from streams.contracts import FeatureEvent, LabelEvent, RetrainRequest
from streams.producer import EventProducer
from streams.settings import Settings

pytestmark = pytest.mark.integration

CATEGORICAL = ("elevel", "car", "zipcode")
NAMES = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")
SPEC = {"entity": "id", "features": [
    {"name": n, "kind": "categorical" if n in CATEGORICAL else "numeric"} for n in NAMES]}
T0 = datetime(2026, 4, 1, tzinfo=UTC)
N, DRIFT_AT = 4500, 3000
LABEL_LAG = timedelta(seconds=120)
CHANGE = T0 + timedelta(seconds=DRIFT_AT)  # feature event time of the first changed event
TOLERANCE = timedelta(seconds=40)  # events, one per second; less than LABEL_LAG


def _publish(settings: Settings) -> None:
    stream = synth.ConceptDriftStream(
        stream=synth.Agrawal(classification_function=0, seed=0),
        drift_stream=synth.Agrawal(classification_function=4, seed=1),
        position=DRIFT_AT, width=20, seed=0)  # width 1 overflows river
    with EventProducer(settings, "test") as producer:
        for i, (x, y) in enumerate(itertools.islice(stream, N)):
            at = T0 + timedelta(seconds=i)
            feats = {k: (str(v) if k in CATEGORICAL else float(v)) for k, v in x.items()}
            producer.send(settings.topic("features"), FeatureEvent(
                event_id=f"ev{i}", model="agrawal", entity_id="a", event_time=at,
                features=feats), "a", span=False)
            producer.send(settings.topic("labels"), LabelEvent(
                event_id=f"ev{i}", model="agrawal", label=float(y),
                event_time=at + LABEL_LAG), "a", span=False)


def _drift_request() -> RetrainRequest:
    """What the drift monitor sent for the same change (it opened the episode)."""
    return RetrainRequest(
        event_id="drift-ev-1", request_id="covariate-agrawal-1", model="agrawal",
        reason="covariate", base_version=None, window_start=CHANGE, window_end=CHANGE,
        requested_at=datetime.now(UTC), change_point=CHANGE,
        episode_id="covariate-agrawal-1", attempt=1)


def _run(settings: Settings) -> dict[str, float]:
    """Learn the stream; returns the ``driftloop.retrain.episodes`` counts by status."""
    telemetry = in_memory_telemetry("online-test")
    service = build(settings, snapshot_every=10_000, snapshot_interval_s=3600,
                    telemetry=telemetry)
    learner = service.state.learners["agrawal"]
    service.run(until=lambda: learner.learned >= N, idle_timeout_s=60)
    assert learner.learned == N
    detected = [int(s.event_id[2:]) for _, s in service.detections if s.event_id]
    assert any(DRIFT_AT <= d <= DRIFT_AT + 400 for d in detected), detected
    counts: dict[str, float] = {}
    for attributes, point in telemetry.metric_points("driftloop.retrain.episodes"):
        status = attributes["driftloop.episode.status"]
        counts[status] = counts.get(status, 0) + point.value
    return counts


def test_a_detection_joins_the_open_episode_and_sends_no_request(settings: Settings) -> None:
    settings = settings.with_models({"agrawal": {"online": {"spec": SPEC}}})
    opened = _drift_request()
    with EventProducer(settings, "test") as producer:
        producer.send(settings.topic("retrain.requests"), opened, "agrawal", span=False)
    _publish(settings)
    counts = _run(settings)

    requests, episodes = read_control(settings)
    assert [r.request_id for r in requests] == [opened.request_id]  # no concept request
    joined = [e for e in episodes if e.status == "joined"]
    assert counts == {"joined": len(joined)}
    assert joined and all(e.episode_id == opened.request_id for e in joined)
    assert {e.status for e in episodes} == {"joined"}
    first = joined[0]
    assert first.detector == "online" and first.model == "agrawal"
    assert first.evidence and "drift at" in first.evidence[0]
    assert first.change_point is not None and abs(first.change_point - CHANGE) <= TOLERANCE


def test_without_an_episode_one_request_opens_one_at_the_change(settings: Settings) -> None:
    settings = settings.with_models({"agrawal": {"online": {"spec": SPEC}}})
    _publish(settings)
    counts = _run(settings)

    requests, episodes = read_control(settings)
    assert len(requests) == 1 and counts == {"opened": 1}
    request = requests[0]
    assert request.reason == "concept" and request.attempt == 1
    assert request.episode_id == request.request_id
    assert request.change_point is not None
    # near the true change in feature time, not the detection minus 10 minutes nor the
    # labels' time (2 minutes later)
    assert abs(request.change_point - CHANGE) <= TOLERANCE, request.change_point - CHANGE
    assert request.window_start == request.change_point < request.window_end
    assert request.window_end - request.change_point < timedelta(minutes=10)
    assert [(e.status, e.episode_id, e.request_id) for e in episodes] == [
        ("opened", request.request_id, request.request_id)]
    assert episodes[0].detector == "online" and episodes[0].change_point == request.change_point
