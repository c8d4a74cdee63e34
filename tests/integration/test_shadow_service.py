"""Shadow service over the real broker and a real (local) registry: stale candidates are
rejected, a better candidate is promoted (alias moved, verdict and promotion published)
and rolled back by ``driftloop models rollback``, a worse candidate is rejected and an
equal one is not promoted (policy from the settings), and a promotion that goes bad live
is rolled back automatically; a service killed between the alias move and the events
completes them at its next start; a label that does not fit the task is dead-lettered;
a regression model is compared on squared error and a candidate of another task refused."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from chaos.workers.shadow import register_toy

from services.model.preprocessing import FORMAT_VERSION
from services.model.tabular import TabularModel
from services.registry.manifest import Lineage
from services.registry.store import ModelRegistry
from services.shadow.decision import ShadowPolicy
from services.shadow.promotion import Outbox
from services.shadow.rollback import RollbackPolicy
from services.shadow.service import ShadowService, build
from streams.broker import free_port
from streams.consumer import ConsumerLoop
from streams.contracts import (
    FeatureEvent,
    LabelEvent,
    ModelCandidate,
    ModelPromotion,
    ShadowVerdict,
)
from streams.producer import EventProducer
from streams.settings import Settings, load_settings

pytestmark = pytest.mark.integration

MODEL = "toy"
T0 = datetime(2026, 4, 1, tzinfo=UTC)
POLICY = ShadowPolicy(min_pairs=200, look_every=200, max_pairs=2000)
ROLLBACK = RollbackPolicy(window=300, min_events=100, look_every=100, margin=0.05)
CRASH_WORKER = Path(__file__).parent / "workers" / "shadow_crash_worker.py"


def cli(*args: str, settings: Settings, timeout: float = 60.0,
        **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m services.cli.main ARGS`` with DRIFTLOOP_* pointing at ``settings``."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args], capture_output=True, text=True,
        env={**os.environ, **settings_env(settings), "COLUMNS": "250", **env}, timeout=timeout,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    return {"DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "DRIFTLOOP_TOPICS__PREFIX": settings.topics.prefix,
            "DRIFTLOOP_STATE_DIR": str(settings.state_dir),
            "DRIFTLOOP_REGISTRY_URI": settings.registry_uri}


def quiet_for(service: ShadowService, seconds: float) -> Callable[[], bool]:
    """Stop condition: something was consumed, then nothing new for ``seconds``."""
    seen = {"n": -1, "at": time.monotonic()}

    def check() -> bool:
        n = service.loop.stats.consumed
        if n != seen["n"]:
            seen["n"], seen["at"] = n, time.monotonic()
        return n > 0 and time.monotonic() - seen["at"] > seconds

    return check


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
    v1, _ = register_toy(registry, 0.5, None)
    registry.set_alias(MODEL, "champion", v1, expected=None)
    v2, sha2 = register_toy(registry, 2.0, v1)
    v3, sha3 = register_toy(registry, 1.0, v2)  # built on v2, which is not champion
    with EventProducer(settings, "test") as producer:
        for cand in (_candidate(registry, v2, sha2, v1), _candidate(registry, v3, sha3, v2)):
            producer.send(settings.topic("models.candidates"), cand, MODEL)
    # the candidates are taken in before any traffic (a first service instance)
    first = ShadowService(settings, registry=registry, policy=POLICY, rollback=ROLLBACK)
    first.run(until=lambda: len(first.published) >= 1 and first.book.runs.get(MODEL),
              idle_timeout_s=30)
    assert [(e.candidate, e.decision) for e in first.published] == [(v3, "reject")]
    assert "no longer champion" in first.published[0].reason
    assert first.published[0].request_id == f"req-{v3}"  # the candidate event's request
    return registry, v1, v2


def read_outputs(settings: Settings, n: int, linger_s: float = 0.0
                 ) -> list[ShadowVerdict | ModelPromotion]:
    """Verdicts and promotions on the topics: at least ``n``, then ``linger_s`` more."""
    got: list = []
    reached: list[float] = []

    def done() -> bool:
        if len(got) >= n and not reached:
            reached.append(time.monotonic())
        return bool(reached) and time.monotonic() - reached[0] >= linger_s

    loop = ConsumerLoop(settings, group_id=f"{settings.topics.prefix}reader",
                        topics={settings.topic("models.verdicts"): ShadowVerdict,
                                settings.topic("models.promotions"): ModelPromotion},
                        handle_batch=lambda b: got.extend(i.event for i in b) or None,
                        service_name="reader")
    loop.run(until=done, idle_timeout_s=15)
    return got


def test_better_candidate_is_promoted_then_rolled_back_by_the_cli(settings: Settings) -> None:
    registry, v1, v2 = _setup(settings)
    _publish_events(settings, 1000, None, seed=1)
    service = ShadowService(settings, registry=registry, policy=POLICY, rollback=ROLLBACK,
                            batch_size=100)
    assert MODEL in service.book.runs  # restored from the first instance's book
    service.run(until=lambda: len(service.published) >= 2 and not service.book.watches,
                idle_timeout_s=30)
    verdict, promotion = list(service.published)[:2]
    assert isinstance(verdict, ShadowVerdict) and verdict.decision == "promote"
    assert verdict.candidate == v2 and verdict.champion == v1 and verdict.samples == 200
    assert verdict.request_id == f"req-{v2}"  # through the promotion outbox too
    assert verdict.test.p_value < 0.01 and verdict.candidate_metric < verdict.champion_metric
    assert isinstance(promotion, ModelPromotion) and promotion.cause == "shadow"
    assert registry.get_alias(MODEL, "champion") == v2
    assert not service.book.watches  # confirmed: no rollback
    assert len(service.published) == 2
    assert not list((Path(settings.registry_uri) / "models" / MODEL / "outbox").glob("*.json"))

    # an operator rolls back: `champion` returns to the alias record's previous version
    done = cli("models", "rollback", "--model", MODEL, settings=settings)
    assert done.returncode == 0, done.stderr + done.stdout
    assert f"champion v{v2} -> v{v1} (rollback)" in done.stdout
    assert registry.get_alias(MODEL, "champion") == v1
    on_topics = read_outputs(settings, 4)
    assert [(type(e).__name__, getattr(e, "decision", getattr(e, "cause", "")))
            for e in on_topics if isinstance(e, ModelPromotion)] == [
        ("ModelPromotion", "shadow"), ("ModelPromotion", "rollback")]
    assert sorted(e.decision for e in on_topics if isinstance(e, ShadowVerdict)) == [
        "promote", "reject"]
    rollback = next(e for e in on_topics if getattr(e, "cause", "") == "rollback")
    assert (rollback.new_champion, rollback.previous_champion) == (v1, v2)
    assert rollback.event_id in done.stdout  # the id the command reported
    # a second rollback goes back to v2 only when asked to; --to a missing version fails
    bad = cli("models", "rollback", "--model", MODEL, "--to", "99", settings=settings)
    assert bad.returncode == 1 and "NOT moved" in bad.stderr
    assert registry.get_alias(MODEL, "champion") == v1


def test_worse_rejected_and_equal_not_promoted_with_policy_from_settings(
    settings: Settings,
) -> None:
    shadow = {"min_pairs": 200, "look_every": 200, "max_pairs": 400}
    settings = settings.with_models({MODEL: {"shadow": shadow}})
    registry = ModelRegistry(settings.registry_uri)
    v1, _ = register_toy(registry, 0.5, None)
    registry.set_alias(MODEL, "champion", v1, expected=None)
    worse, sha_w = register_toy(registry, -0.5, v1)
    equal, sha_e = register_toy(registry, 0.5, v1, "req-equal")  # the champion's own weights
    with EventProducer(settings, "test") as producer:
        for version, sha in ((worse, sha_w), (equal, sha_e)):
            producer.send(settings.topic("models.candidates"),
                          _candidate(registry, version, sha, v1), MODEL)
    first = build(settings)  # as `driftloop run shadow` builds it
    assert first.book.shadow_policy(MODEL) == ShadowPolicy(**shadow)
    first.run(until=lambda: len(first.book.runs.get(MODEL, {})) == 2, idle_timeout_s=30)
    with EventProducer(settings, "test") as producer:  # a binary model's label cannot be 0.5
        producer.send(settings.topic("labels"), LabelEvent(
            event_id="half", model=MODEL, label=0.5, event_time=T0), "entity")
    _publish_events(settings, 500, None, seed=3)
    service = build(settings)
    service.run(until=lambda: len(service.published) >= 2, idle_timeout_s=30)
    assert dict(service.loop.dead_letters.counts) == {"invalid_value": 1}
    assert service.pairing(MODEL).counters.invalid_labels == 1
    verdicts = {e.candidate: e for e in service.published}
    assert all(isinstance(e, ShadowVerdict) and e.decision == "reject"
               for e in service.published)
    assert "worse than the champion" in verdicts[worse].reason
    assert verdicts[worse].samples == 200
    assert verdicts[worse].candidate_metric > verdicts[worse].champion_metric
    assert verdicts[equal].reason == "no significant improvement after max_pairs=400"
    assert verdicts[equal].samples == 400
    assert verdicts[equal].candidate_metric == verdicts[equal].champion_metric
    assert registry.get_alias(MODEL, "champion") == v1
    assert not service.book.runs.get(MODEL) and not service.book.watches


def _register_linear(registry: ModelRegistry, model: str, weight: float, parent: int | None,
                     task: str) -> tuple[int, str]:
    """Register ``weight * x`` on one feature ``x``: a regression model's value, or a binary
    model's logit; returns (version, manifest sha256)."""
    module = TabularModel(2, [], [], [], 0.0)  # x and its missing indicator
    with torch.no_grad():
        module.mlp[0].weight.copy_(torch.tensor([[weight, 0.0]]))
        module.mlp[0].bias.zero_()
    reg = registry.register(
        model, state_dict=module.state_dict(),
        preprocessing={"format": FORMAT_VERSION, "categorical": [],
                       "numeric": [{"name": "x", "mean": 0.0, "std": 1.0}]},
        model_meta=module.meta, task={"kind": task},
        lineage=Lineage(training_snapshot_id=f"snap-{task}-{weight}", parent_version=parent,
                        request_id=f"req-{task}-{weight}"),
        hyperparameters={}, metrics={}, seeds={},
    )
    return reg.version, reg.manifest_sha256


def _send_linear(producer: EventProducer, settings: Settings, model: str, prefix: str,
                 rng: np.random.Generator, n: int = 300, noise_sd: float = 0.0) -> None:
    """``n`` regression events one second apart from T0 (ids ``<prefix><i>``), ``x``
    standard normal and labelled ``2x`` (plus normal noise of ``noise_sd``)."""
    for i in range(n):
        x = float(rng.normal())
        at = T0 + timedelta(seconds=i)
        label = 2.0 * x + (float(rng.normal(0, noise_sd)) if noise_sd else 0.0)
        producer.send(settings.topic("features"), FeatureEvent(
            event_id=f"{prefix}{i}", model=model, entity_id="e", event_time=at,
            features={"x": x}), "e", span=False)
        producer.send(settings.topic("labels"), LabelEvent(
            event_id=f"{prefix}{i}", model=model, label=label, event_time=at), "e", span=False)


def test_regression_candidate_promoted_on_squared_error_other_task_refused(
    settings: Settings,
) -> None:
    model = "price"
    registry = ModelRegistry(settings.registry_uri)
    v1, _ = _register_linear(registry, model, 1.0, None, "regression")
    registry.set_alias(model, "champion", v1, expected=None)
    better, sha_b = _register_linear(registry, model, 2.0, v1, "regression")
    binary, sha_c = _register_linear(registry, model, 2.0, v1, "binary")
    rng = np.random.default_rng(5)
    with EventProducer(settings, "test") as producer:
        for version, sha in ((binary, sha_c), (better, sha_b)):
            producer.send(settings.topic("models.candidates"), ModelCandidate(
                event_id=f"cand-{version}", model=model, version=version, parent_version=v1,
                request_id=f"req-{version}", registry_uri=registry.uri(model, version),
                sha256=sha), model)
    # the candidates are taken in before any traffic (a first service instance)
    first = ShadowService(settings, registry=registry, policy=POLICY, rollback=ROLLBACK)
    first.run(until=lambda: first.published and first.book.runs.get(model), idle_timeout_s=30)
    [refused] = first.published
    assert isinstance(refused, ShadowVerdict) and refused.candidate == binary
    assert refused.decision == "reject" and refused.samples == 0
    assert refused.metric == "squared_error"  # the comparison's loss: the champion's task
    assert refused.reason == ("candidate task binary differs from the champion's regression: "
                              "their losses are not comparable")
    with EventProducer(settings, "test") as producer:
        # y = 2x + noise: the candidate's squared error is 1/5th
        _send_linear(producer, settings, model, "p", rng, noise_sd=0.5)
    service = ShadowService(settings, registry=registry, policy=POLICY, rollback=ROLLBACK,
                            batch_size=100)
    service.run(until=lambda: len(service.published) >= 2, idle_timeout_s=30)
    verdict, promotion = list(service.published)[:2]
    assert isinstance(verdict, ShadowVerdict) and verdict.decision == "promote"
    assert verdict.candidate == better and verdict.metric == "squared_error"
    assert verdict.samples == 200 and verdict.test.relative_improvement > 0.5
    assert 0.1 < verdict.candidate_metric < 0.5 < 1.0 < verdict.champion_metric < 1.6
    assert isinstance(promotion, ModelPromotion) and promotion.new_champion == better
    assert registry.get_alias(model, "champion") == better
    assert service.book.watches[model].champion == better  # watched on squared error too
    assert not service.loop.dead_letters.counts  # every regression label fits


def test_promotion_that_goes_bad_live_is_rolled_back(
    settings: Settings, caplog: pytest.LogCaptureFixture,
) -> None:
    registry, v1, v2 = _setup(settings)
    # promoted on the first 200 pairs (look 1); watched over the next 300, from pair <= 300
    # (batches of 100): labels flip from event 300 on, so the watch sees it go bad
    _publish_events(settings, 1000, flip_after=300, seed=2)
    service = ShadowService(settings, registry=registry, policy=POLICY, rollback=ROLLBACK,
                            batch_size=100)
    with caplog.at_level(logging.WARNING, logger="services.shadow.service"):
        service.run(until=lambda: any(isinstance(e, ModelPromotion) and e.cause == "rollback"
                                      for e in service.published), idle_timeout_s=30)
    causes = [e.cause for e in service.published if isinstance(e, ModelPromotion)]
    assert causes == ["shadow", "rollback"]
    rollback = service.published[-1]
    assert isinstance(rollback, ModelPromotion)
    assert rollback.new_champion == v1 and rollback.previous_champion == v2
    assert registry.get_alias(MODEL, "champion") == v1
    # judged against v1 scored on the same events (the service kept scoring it), not
    # against v2's shadow estimate
    (why,) = [r.getMessage() for r in caplog.records if "rolled back" in r.getMessage()]
    assert "exceeds the previous champion's" in why, why


def test_a_watch_whose_previous_champion_cannot_be_loaded_ends_without_a_rollback(
    settings: Settings, caplog: pytest.LogCaptureFixture,
) -> None:
    registry, v1, v2 = _setup(settings)
    _publish_events(settings, 1000, flip_after=300, seed=3)  # v2 goes bad once watched
    service = ShadowService(settings, registry=registry, policy=POLICY, rollback=ROLLBACK,
                            batch_size=100)
    service.run(until=lambda: len(service.published) >= 2, idle_timeout_s=30)
    assert service.book.watches[MODEL].previous == v1  # stopped with the watch open
    (Path(settings.registry_uri) / "models" / MODEL / "versions" / str(v1)
     / "weights.pt").unlink()
    restarted = ShadowService(settings, registry=registry, policy=POLICY, rollback=ROLLBACK,
                              batch_size=100)
    with caplog.at_level(logging.WARNING, logger="services.shadow.service"):
        restarted.run(until=quiet_for(restarted, 3.0), idle_timeout_s=30)
    # no rollback to a version that cannot serve, the watch ended with a reason, and the
    # loop went on to the end of the stream
    assert registry.get_alias(MODEL, "champion") == v2
    assert not restarted.published and MODEL not in restarted.book.watches
    assert any(f"previous champion v{v1} cannot be loaded" in r.getMessage()
               for r in caplog.records)
    assert restarted.loop.stats.consumed > 0


def test_crash_between_alias_move_and_events_is_completed_at_restart(
    settings: Settings,
) -> None:
    models = {MODEL: {"shadow": POLICY.model_dump(mode="json"),
                      "rollback": ROLLBACK.model_dump(mode="json")}}
    settings = settings.with_models(models)
    registry = ModelRegistry(settings.registry_uri)
    v1, _ = register_toy(registry, 0.5, None)
    registry.set_alias(MODEL, "champion", v1, expected=None)
    v2, sha2 = register_toy(registry, 2.0, v1)
    with EventProducer(settings, "test") as producer:
        producer.send(settings.topic("models.candidates"), _candidate(registry, v2, sha2, v1),
                      MODEL)
    first = build(settings)
    first.run(until=lambda: bool(first.book.runs.get(MODEL)), idle_timeout_s=30)
    _publish_events(settings, 600, None, seed=4)

    # the shadow service in its own process, killed (SIGKILL) right after the alias move
    crashed = subprocess.run(
        [sys.executable, str(CRASH_WORKER), json.dumps({
            "bootstrap": settings.kafka.bootstrap_servers, "prefix": settings.topics.prefix,
            "state_dir": str(settings.state_dir), "registry_uri": settings.registry_uri,
            "models": models})],
        capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert f"alias moved v{v1} -> v{v2}" in crashed.stdout
    assert registry.get_alias(MODEL, "champion") == v2
    [pending] = Outbox(registry).pending(MODEL)
    assert (pending.previous_champion, pending.new_champion, pending.cause) == (v1, v2, "shadow")

    # the next start completes it: both events, once, with the intended ids
    service = build(settings)
    service.run(until=quiet_for(service, 1.5), idle_timeout_s=30)
    assert [(type(e).__name__, e.event_id) for e in service.published] == [
        ("ShadowVerdict", pending.verdict.event_id), ("ModelPromotion", pending.intent_id)]
    assert not Outbox(registry).pending(MODEL)
    assert registry.get_alias(MODEL, "champion") == v2
    assert not service.book.runs.get(MODEL) and service.book.champions[MODEL] == v2
    on_topics = read_outputs(settings, 2, linger_s=1.5)
    # two topics: the reader may see them in either order, but each event exactly once
    assert sorted((type(e).__name__, e.event_id) for e in on_topics) == sorted(
        (type(e).__name__, e.event_id) for e in service.published)
    [verdict] = [e for e in on_topics if isinstance(e, ShadowVerdict)]
    [promotion] = [e for e in on_topics if isinstance(e, ModelPromotion)]
    assert verdict.decision == "promote" and verdict.request_id == f"req-{v2}"
    assert verdict.candidate == v2 and verdict.champion == v1
    assert promotion.cause == "shadow"
    assert (promotion.new_champion, promotion.previous_champion) == (v2, v1)


def test_rollback_with_kafka_unreachable_moves_nothing(tmp_path: Path) -> None:
    settings = load_settings(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"},
                             state_dir=tmp_path / "state", registry_uri=str(tmp_path / "reg"))
    registry = ModelRegistry(settings.registry_uri)
    v1, _ = register_toy(registry, 0.5, None)
    v2, _ = register_toy(registry, 2.0, v1)
    registry.set_alias(MODEL, "champion", v1, expected=None)
    registry.set_alias(MODEL, "champion", v2, expected=v1)
    done = cli("models", "rollback", "--model", MODEL, "--timeout", "2", settings=settings)
    assert done.returncode == 1
    assert "unreachable" in done.stderr and "NOT moved" in done.stderr
    assert registry.get_alias(MODEL, "champion") == v2
    assert not Outbox(registry).pending(MODEL)


def test_a_candidate_is_judged_only_on_traffic_after_its_training_window(
    settings: Settings,
) -> None:
    """Bug caught: a candidate scored on events it was trained on (they reach the shadow
    whenever it reads features later than the trainer read the offline store), whose
    flattering estimate then promotes it and rolls it back once live traffic comes."""
    model = "price"
    registry = ModelRegistry(settings.registry_uri)
    v1, _ = _register_linear(registry, model, 1.0, None, "regression")
    registry.set_alias(model, "champion", v1, expected=None)
    module = TabularModel(2, [], [], [], 0.0)
    with torch.no_grad():
        module.mlp[0].weight.copy_(torch.tensor([[2.0, 0.0]]))
        module.mlp[0].bias.zero_()
    trained_until = T0 + timedelta(seconds=150)
    cand = registry.register(
        model, state_dict=module.state_dict(),
        preprocessing={"format": FORMAT_VERSION, "categorical": [],
                       "numeric": [{"name": "x", "mean": 0.0, "std": 1.0}]},
        model_meta=module.meta, task={"kind": "regression"},
        lineage=Lineage(training_snapshot_id="snap-window", parent_version=v1,
                        request_id="req-window", window_start=T0, window_end=trained_until),
        hyperparameters={}, metrics={}, seeds={})
    rng = np.random.default_rng(6)
    with EventProducer(settings, "test") as producer:
        producer.send(settings.topic("models.candidates"), ModelCandidate(
            event_id="cand-window", model=model, version=cand.version, parent_version=v1,
            request_id="req-window", registry_uri=registry.uri(model, cand.version),
            sha256=cand.manifest_sha256), model)
        _send_linear(producer, settings, model, "w", rng)  # its window and as much after
    service = ShadowService(settings, registry=registry, policy=POLICY, rollback=ROLLBACK,
                            batch_size=100)
    run = lambda: service.book.runs.get(model, {}).get(cand.version)  # noqa: E731
    service.run(until=lambda: run() is not None and run().stats.moments.n >= 150,
                idle_timeout_s=20)
    assert run() is not None and run().stats.moments.n == 150  # events 150..299 only
    assert not service.published  # 150 pairs: below the first look (200), no verdict
