"""The online service watches the registry champion's error, over the real broker.

A regression model ``lin`` (``y = 3 x0 + x1 + noise``) has a registered champion that
knows that relation exactly. At event 2,000 the relation becomes ``y = -x0 + 3 x1``:
the features do not move. The service scores every labelled event with the champion
(loaded from the registry, sha256 checked) and its watch raises the change, whose
evidence names the champion and whose change point is the change's feature time. With
``online.champion_watch: false`` no evidence of the champion appears.

Bugs caught: the watch not wired into the service (no champion evidence); its change
point taken at the detection or at the label time; the watch alarming on a stationary
stream (the first 2,000 events); the option not turning it off.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import torch
from samples.topic_reader import read_control

from services.model.preprocessing import FORMAT_VERSION
from services.model.tabular import TabularModel
from services.observability.setup import in_memory_telemetry
from services.online.service import build
from services.registry.manifest import Lineage
from services.registry.store import ModelRegistry
from streams.contracts import FeatureEvent, LabelEvent
from streams.producer import EventProducer
from streams.settings import Settings

pytestmark = pytest.mark.integration

SPEC = {"entity": "id", "features": [{"name": "x0", "kind": "numeric"},
                                     {"name": "x1", "kind": "numeric"}]}
T0 = datetime(2026, 4, 1, tzinfo=UTC)
N, CHANGE_AT = 3000, 2000
LABEL_LAG = timedelta(seconds=60)
CHANGE = T0 + timedelta(seconds=CHANGE_AT)


def _register_champion(settings: Settings) -> int:
    """Champion v1: exactly ``3 x0 + x1`` (a linear layer over unscaled inputs)."""
    module = TabularModel(4, [], [], [], 0.0)  # x0, x1 and their missing indicators
    with torch.no_grad():
        module.mlp[0].weight.copy_(torch.tensor([[3.0, 1.0, 0.0, 0.0]]))
        module.mlp[0].bias.zero_()
    registry = ModelRegistry(settings.registry_uri)
    reg = registry.register(
        "lin", state_dict=module.state_dict(),
        preprocessing={"format": FORMAT_VERSION, "numeric": [
            {"name": "x0", "mean": 0.0, "std": 1.0}, {"name": "x1", "mean": 0.0, "std": 1.0}],
            "categorical": []},
        model_meta=module.meta, lineage=Lineage(training_snapshot_id="snap", request_id="r1"),
        hyperparameters={}, metrics={}, seeds={}, task={"kind": "regression"})
    registry.set_alias("lin", "champion", reg.version, expected=None)
    return reg.version


def _publish(settings: Settings) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, 2))
    before = 3.0 * x[:, 0] + x[:, 1]
    after = -x[:, 0] + 3.0 * x[:, 1]
    y = np.where(np.arange(N) >= CHANGE_AT, after, before) + 0.5 * rng.standard_normal(N)
    with EventProducer(settings, "test") as producer:
        for i in range(N):
            at = T0 + timedelta(seconds=i)
            producer.send(settings.topic("features"), FeatureEvent(
                event_id=f"ev{i}", model="lin", entity_id="a", event_time=at,
                features={"x0": float(x[i, 0]), "x1": float(x[i, 1])}), "a", span=False)
            producer.send(settings.topic("labels"), LabelEvent(
                event_id=f"ev{i}", model="lin", label=float(y[i]),
                event_time=at + LABEL_LAG), "a", span=False)


def _learn(settings: Settings, watch: bool) -> Any:
    settings = settings.with_models({"lin": {"task": "regression", "online": {
        "spec": SPEC, "champion_watch": watch}}})
    version = _register_champion(settings)
    _publish(settings)
    service = build(settings, snapshot_every=10_000, snapshot_interval_s=3600,
                    telemetry=in_memory_telemetry("online-test"))
    learner = service.state.learners["lin"]
    service.run(until=lambda: learner.learned >= N, idle_timeout_s=60)
    assert learner.learned == N
    return service, version


def test_the_champion_watch_raises_a_concept_change_at_its_feature_time(
        settings: Settings) -> None:
    service, version = _learn(settings, watch=True)
    watch = service.state.watches["lin"]
    assert watch.version == version and watch.watched == N  # every labelled event scored
    requests, episodes = read_control(settings)
    assert len(requests) == 1 and requests[0].reason == "concept"
    champion = [e for e in episodes if any(f"champion v{version}" in line
                                           for line in e.evidence)]
    assert len(champion) == 1, [e.evidence for e in episodes]
    event = champion[0]
    assert event.status in {"opened", "joined"}
    assert event.episode_id == requests[0].episode_id
    # at the change in feature time: not the detection, not the label's time (60 s later)
    assert event.change_point is not None
    assert abs(event.change_point - CHANGE) <= timedelta(seconds=20), event.change_point
    detections = [s for _, s in service.detections if hasattr(s, "watched")]
    assert len(detections) == 1
    assert CHANGE_AT <= int(detections[0].event_id[2:]) <= CHANGE_AT + 300


def test_the_watch_can_be_turned_off(settings: Settings) -> None:
    service, _version = _learn(settings, watch=False)
    assert service.state.watches == {}
    _, episodes = read_control(settings)
    assert not any("champion" in line for e in episodes for line in e.evidence)
