"""Shadow service over the real broker and a real (local) registry: stale candidates are
rejected, a better candidate is promoted (alias moved, verdict and promotion published),
and a promotion that goes bad live is rolled back."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch

from services.registry.manifest import Lineage
from services.registry.store import ModelRegistry
from services.shadow.decision import ShadowPolicy
from services.shadow.rollback import RollbackPolicy
from services.shadow.service import ShadowService
from services.training.model import TabularModel
from services.training.preprocessing import FORMAT_VERSION
from streams.consumer import ConsumerLoop
from streams.contracts import (
    FeatureEvent,
    LabelEvent,
    ModelCandidate,
    ModelPromotion,
    ShadowVerdict,
)
from streams.producer import EventProducer
from streams.settings import Settings

pytestmark = pytest.mark.integration

MODEL = "toy"
T0 = datetime(2026, 4, 1, tzinfo=UTC)
POLICY = ShadowPolicy(min_pairs=200, look_every=200, max_pairs=2000)
ROLLBACK = RollbackPolicy(window=300, min_events=100, look_every=100, margin=0.05)


def _register(registry: ModelRegistry, weight: float, parent: int | None) -> tuple[int, str]:
    """A logistic model p = sigmoid(weight * x) on one numeric feature ``x``."""
    module = TabularModel(2, [], [], [], 0.0)
    with torch.no_grad():
        module.mlp[0].weight.copy_(torch.tensor([[weight, 0.0]]))
        module.mlp[0].bias.zero_()
    reg = registry.register(
        MODEL, state_dict=module.state_dict(),
        preprocessing={"format": FORMAT_VERSION, "numeric": [{"name": "x", "mean": 0.0,
                       "std": 1.0}], "categorical": []},
        model_meta=module.meta,
        lineage=Lineage(training_snapshot_id=f"snap-{weight}", parent_version=parent),
        hyperparameters={}, metrics={}, seeds={},
    )
    return reg.version, reg.manifest_sha256


def _candidate(registry: ModelRegistry, version: int, sha: str, parent: int) -> ModelCandidate:
    return ModelCandidate(event_id=f"cand-{version}", model=MODEL, version=version,
                          parent_version=parent, request_id=f"req-{version}",
                          registry_uri=registry.uri(MODEL, version), sha256=sha)


def _publish_events(settings: Settings, n: int, flip_after: int | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with EventProducer(settings, "test") as producer:
        for i in range(n):
            x = float(rng.normal())
            sign = -1.0 if flip_after is not None and i >= flip_after else 1.0
            y = float(rng.random() < 1 / (1 + math.exp(-2.0 * sign * x)))
            at = T0 + timedelta(seconds=i)
            key = "entity"  # one partition: events are consumed in the order they happened
            producer.send(settings.topic("features"), FeatureEvent(
                event_id=f"ev{seed}-{i}", model=MODEL, entity_id=key, event_time=at,
                features={"x": x}), key, span=False)
            producer.send(settings.topic("labels"), LabelEvent(
                event_id=f"ev{seed}-{i}", model=MODEL, label=y, event_time=at), key, span=False)


def _setup(settings: Settings) -> tuple[ModelRegistry, int, int]:
    registry = ModelRegistry(settings.registry_uri)
    v1, _ = _register(registry, 0.5, None)
    registry.set_alias(MODEL, "champion", v1, expected=None)
    v2, sha2 = _register(registry, 2.0, v1)
    v3, sha3 = _register(registry, 1.0, v2)  # built on v2, which is not champion
    with EventProducer(settings, "test") as producer:
        for cand in (_candidate(registry, v2, sha2, v1), _candidate(registry, v3, sha3, v2)):
            producer.send(settings.topic("models.candidates"), cand, MODEL)
    # the candidates are taken in before any traffic (a first service instance)
    first = ShadowService(settings, registry=registry, policy=POLICY, rollback=ROLLBACK)
    first.run(until=lambda: len(first.published) >= 1 and first.book.runs.get(MODEL),
              idle_timeout_s=30)
    assert [(e.candidate, e.decision) for e in first.published] == [(v3, "reject")]
    assert "no longer champion" in first.published[0].reason
    return registry, v1, v2


def _read(settings: Settings, n: int) -> list[ShadowVerdict | ModelPromotion]:
    got: list = []
    loop = ConsumerLoop(settings, group_id=f"{settings.topics.prefix}reader",
                        topics={settings.topic("models.verdicts"): ShadowVerdict,
                                settings.topic("models.promotions"): ModelPromotion},
                        handle_batch=lambda b: got.extend(i.event for i in b) or None,
                        service_name="reader")
    loop.run(until=lambda: len(got) >= n, idle_timeout_s=15)
    return got


def test_better_candidate_is_promoted_and_confirmed(settings: Settings) -> None:
    registry, v1, v2 = _setup(settings)
    _publish_events(settings, 1000, None, seed=1)
    service = ShadowService(settings, registry=registry, policy=POLICY, rollback=ROLLBACK,
                            batch_size=100)
    assert MODEL in service.book.runs  # restored from the first instance's book
    service.run(until=lambda: len(service.published) >= 2 and not service.book.watches,
                idle_timeout_s=30)
    verdict, promotion = service.published[:2]
    assert isinstance(verdict, ShadowVerdict) and verdict.decision == "promote"
    assert verdict.candidate == v2 and verdict.champion == v1 and verdict.samples == 200
    assert verdict.test.p_value < 0.01 and verdict.candidate_metric < verdict.champion_metric
    assert isinstance(promotion, ModelPromotion) and promotion.cause == "shadow"
    assert registry.get_alias(MODEL, "champion") == v2
    assert not service.book.watches  # confirmed: no rollback
    assert len(service.published) == 2
    on_topics = _read(settings, 4)
    assert sorted(type(e).__name__ + getattr(e, "decision", getattr(e, "cause", ""))
                  for e in on_topics) == ["ModelPromotionshadow", "ShadowVerdictpromote",
                                          "ShadowVerdictreject"]


def test_promotion_that_goes_bad_live_is_rolled_back(settings: Settings) -> None:
    registry, v1, v2 = _setup(settings)
    # promoted on the first 200 pairs (look 1); watched over the next 300, from pair <= 300
    # (batches of 100): labels flip from event 300 on, so the watch sees it go bad
    _publish_events(settings, 1000, flip_after=300, seed=2)
    service = ShadowService(settings, registry=registry, policy=POLICY, rollback=ROLLBACK,
                            batch_size=100)
    service.run(until=lambda: any(isinstance(e, ModelPromotion) and e.cause == "rollback"
                                  for e in service.published), idle_timeout_s=30)
    causes = [e.cause for e in service.published if isinstance(e, ModelPromotion)]
    assert causes == ["shadow", "rollback"]
    rollback = service.published[-1]
    assert isinstance(rollback, ModelPromotion)
    assert rollback.new_champion == v1 and rollback.previous_champion == v2
    assert registry.get_alias(MODEL, "champion") == v1
