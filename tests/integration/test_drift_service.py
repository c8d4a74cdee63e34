"""The drift monitor over the real broker: reports, one request per episode, dead
letters, redelivery after a crash, group split and reference switching."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from samples.topic_reader import read_events

from services.drift.profile import build_reference_profile
from services.drift.references import ModelReference, StaticReferences
from services.drift.service import DriftMonitor
from services.featurespec import FeatureSpec, ModelSpec
from services.observability.setup import in_memory_telemetry
from streams.contracts import (
    DriftReport,
    EpisodeEvent,
    FeatureEvent,
    ModelPromotion,
    PairedTest,
    RetrainRequest,
    ShadowVerdict,
)
from streams.producer import EventProducer
from streams.settings import Settings, load_settings

pytestmark = pytest.mark.integration
SPEC = ModelSpec(
    model="m1", entity="card_id",
    features=(*(FeatureSpec(f"x{i}", "numeric") for i in range(5)),
              FeatureSpec("channel", "categorical")),
)
WINDOW = 400
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f"x{i}": rng.standard_normal(n) + (shift if i < 3 else 0.0) for i in range(5)}
    data["channel"] = rng.choice(["online", "pos", "atm"], size=n, p=[0.5, 0.3, 0.2])
    return pd.DataFrame(data)


def _reference(snapshot: str, seed: int = 0, version: int = 1) -> ModelReference:
    profile = build_reference_profile(_frame(20_000, seed), SPEC, snapshot)
    return ModelReference(spec=SPEC, profile=profile, champion_version=version)


def _events(frame: pd.DataFrame, start: int) -> list[FeatureEvent]:
    return [
        FeatureEvent(
            event_id=uuid.uuid4().hex, model="m1", entity_id=f"c{(start + i) % 97}",
            event_time=T0 + timedelta(milliseconds=10 * (start + i)),
            features={k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()},
        )
        for i, row in enumerate(frame.to_dict("records"))
    ]


def _settings(settings: Settings, **drift: Any) -> Settings:
    options = {"window_events": WINDOW, "window_seconds": 3600, "ks_method": "asymp",
               "idle_flush_seconds": 3600, **drift}
    return load_settings(**{**settings.model_dump(), "models": {"m1": {"drift": options}}})


_read = read_events


def _produce(settings: Settings, events: list[FeatureEvent], extra: list[bytes] = ()) -> None:
    with EventProducer(settings, "test") as producer:
        for raw in extra:
            producer.send_raw(settings.topic("features"), raw, b"x", [])
        for e in events:
            producer.send(settings.topic("features"), e, key=e.entity_id, span=False)


def test_drift_episode_yields_reports_and_exactly_one_request(settings: Settings) -> None:
    s = _settings(settings)
    clean = _events(_frame(4 * WINDOW, 1), 0)
    drifted = _events(_frame(6 * WINDOW, 2, shift=0.8), 4 * WINDOW)
    stranger = FeatureEvent(event_id="u1", model="nobody", entity_id="c", event_time=T0,
                            features={"x0": 1.0})
    _produce(s, [*clean, stranger, *drifted], extra=[b"{garbage"])
    telemetry = in_memory_telemetry("driftloop-drift-test")
    monitor = DriftMonitor(s, telemetry=telemetry,
                           references=StaticReferences({"m1": _reference("snap-a")}))
    monitor.run(until=lambda: monitor.stats.windows >= 10, idle_timeout_s=60)

    assert monitor.stats.windows == 10
    assert dict(monitor.loop.dead_letters.counts) == {"not_json": 1, "unknown_model": 1}
    reports = _read(s, "drift.reports", DriftReport, 10)
    assert len(reports) == 10 and sum(r.window.n_events for r in reports) == 10 * WINDOW
    assert sum(r.drifted for r in reports) >= 5
    assert all(r.reference_snapshot_id == "snap-a" for r in reports)
    assert all(len(f.bins) == len(f.window_shares) > 0 for r in reports for f in r.features)
    requests = _read(s, "retrain.requests", RetrainRequest, 1)
    assert len(requests) == 1, "cooldown and in-flight hold within one episode"
    request = requests[0]
    assert request.reason == "covariate" and request.base_version == 1
    assert len(request.drift_report_ids) == 2
    assert set(request.drift_report_ids) <= {r.event_id for r in reports if r.drifted}
    # the change began with the streak's first window: the trainer's data starts there
    streak = sorted((r for r in reports if r.event_id in request.drift_report_ids),
                    key=lambda r: r.window.start_time)
    assert request.change_point == request.window_start == streak[0].window.start_time
    assert (request.episode_id, request.attempt) == (request.request_id, 1)
    opened = _read(s, "retrain.episodes", EpisodeEvent, 1)
    assert [(e.status, e.episode_id, e.detector, e.change_point) for e in opened] == [
        ("opened", request.request_id, "drift", request.change_point)]
    spans = {sp.name: sp for sp in telemetry.finished_spans()}
    decision = spans["retrain decision"]
    assert decision.parent.span_id == spans["drift window evaluation"].context.span_id or any(
        sp.name == "drift window evaluation" and sp.context.span_id == decision.parent.span_id
        for sp in telemetry.finished_spans())
    assert telemetry.metric_points("driftloop.drift.windows")


class SimulatedCrash(BaseException):
    """A process death: not an ``Exception``, so the loop does not retry or dead-letter it."""


class _CrashAfterRequest(DriftMonitor):
    """Dies (before committing) right after producing its first retrain request."""

    def _decide(self, *args: Any, **kwargs: Any) -> None:
        before = self.stats.requests
        super()._decide(*args, **kwargs)
        if self.stats.requests > before:
            self.producer.flush()
            raise SimulatedCrash("simulated crash before commit")


def test_redelivered_windows_never_yield_a_second_request(settings: Settings) -> None:
    s = _settings(settings)
    _produce(s, [*_events(_frame(2 * WINDOW, 3), 0),
                 *_events(_frame(5 * WINDOW, 4, shift=0.8), 2 * WINDOW)])
    references = StaticReferences({"m1": _reference("snap-a")})
    crashing = _CrashAfterRequest(s, references=references)
    with pytest.raises(SimulatedCrash, match="simulated crash"):
        crashing.run(idle_timeout_s=60)
    assert crashing.stats.requests == 1

    restarted = DriftMonitor(s, references=references)
    restarted.run(idle_timeout_s=8)
    # The restarted monitor re-read what was not committed (at least the windows of the
    # crashed batch, which fired the request) and recomputed them: no second request.
    assert restarted.stats.windows >= 2
    assert crashing.stats.windows + restarted.stats.windows > 7
    assert restarted.stats.requests == 0
    requests = _read(s, "retrain.requests", RetrainRequest, 1)
    assert len({r.request_id for r in requests}) == 1 and len(requests) == 1
    reports = _read(s, "drift.reports", DriftReport, 7)
    covered = {(r.partition, o) for rep in reports for r in rep.window.offsets
               for o in range(r.first_offset, r.last_offset + 1)}
    assert len(covered) == 7 * WINDOW  # every event reported at least once


def test_two_monitors_in_one_group_cover_every_partition_once(settings: Settings) -> None:
    s = _settings(settings, window_events=100, idle_flush_seconds=2)
    events = _events(_frame(1200, 5), 0)
    references = StaticReferences({"m1": _reference("snap-a")})
    # Each member keeps its own state directory: replicas never share a state file.
    monitors = [DriftMonitor(s.model_copy(update={"state_dir": s.state_dir / f"member-{i}"}),
                             references=references) for i in range(2)]

    def total() -> int:
        return sum(m.stats.events_reported for m in monitors)

    threads = [threading.Thread(target=m.run, kwargs={"until": lambda: total() >= 1200,
                                                      "idle_timeout_s": 60}) for m in monitors]
    for t in threads:
        t.start()
    for _ in range(200):
        if all(m.loop.assignment for m in monitors):
            break
        time.sleep(0.1)
    a, b = (set(m.loop.assignment) for m in monitors)
    assert a and b and not a & b
    _produce(s, events)
    for t in threads:
        t.join(90)
    reports = _read(s, "drift.reports", DriftReport, 12)
    covered = [(r.partition, o) for rep in reports for r in rep.window.offsets
               for o in range(r.first_offset, r.last_offset + 1)]
    assert len(covered) == len(set(covered)) == 1200


def _promote(s: Settings, new: int, previous: int, cause: str) -> None:
    with EventProducer(s, "test") as producer:
        producer.send(s.topic("models.promotions"), ModelPromotion(
            event_id=uuid.uuid4().hex, model="m1", new_champion=new,
            previous_champion=previous, cause=cause, promoted_at=datetime.now(UTC)), key="m1")


def test_promotion_and_rollback_switch_the_reference(settings: Settings) -> None:
    s = _settings(settings)
    v1, v2 = _reference("snap-a"), _reference("snap-b", seed=9, version=2)
    references = StaticReferences({"m1": v1})
    _produce(s, _events(_frame(2 * WINDOW, 6), 0))
    monitor = DriftMonitor(s, references=references)
    step = {"promoted": False, "rolled_back": False}

    def until() -> bool:
        if monitor.stats.windows >= 2 and not step["promoted"]:
            references.references["m1"] = v2
            _promote(s, 2, 1, "shadow")
            _produce(s, _events(_frame(2 * WINDOW, 7), 2 * WINDOW))
            step["promoted"] = True
        if monitor.stats.windows >= 4 and not step["rolled_back"]:
            references.references["m1"] = v1
            _promote(s, 1, 2, "rollback")
            _produce(s, _events(_frame(2 * WINDOW, 8), 4 * WINDOW))
            step["rolled_back"] = True
        return monitor.stats.windows >= 6

    monitor.run(until=until, idle_timeout_s=60)
    assert monitor.stats.reference_switches == 2
    reports = _read(s, "drift.reports", DriftReport, 6)
    in_order = sorted(reports, key=lambda r: r.window.start_time)
    assert [r.reference_snapshot_id for r in in_order] == [
        "snap-a", "snap-a", "snap-b", "snap-b", "snap-a", "snap-a"]
    assert [r.champion_version for r in in_order] == [1, 1, 2, 2, 1, 1]


def _verdict(s: Settings, candidate: int, request_id: str | None) -> None:
    with EventProducer(s, "test") as producer:
        producer.send(s.topic("models.verdicts"), ShadowVerdict(
            event_id=uuid.uuid4().hex, model="m1", candidate=candidate, champion=1,
            samples=100, metric="log_loss", candidate_metric=0.6, champion_metric=0.5,
            test=PairedTest(method="t", statistic=0.0, p_value=1.0, mean_difference=0.0,
                            relative_improvement=0.0),
            decision="reject", reason="worse", decided_at=datetime.now(UTC),
            request_id=request_id), key="m1")


def test_only_the_verdict_naming_the_request_clears_it(settings: Settings) -> None:
    s = _settings(settings)
    _produce(s, _events(_frame(3 * WINDOW, 2, shift=0.8), 0))
    monitor = DriftMonitor(s, references=StaticReferences({"m1": _reference("snap-a")}))
    seen: dict[str, Any] = {}

    def until() -> bool:
        trigger = monitor.monitors["m1"].trigger if "m1" in monitor.monitors else None
        if trigger is None or (trigger.in_flight is None and "request" not in seen):
            return False
        if "request" not in seen:  # the episode's request is in flight: answer others first
            seen["request"] = trigger.in_flight
            _verdict(s, 2, "another-request")
            _verdict(s, 3, None)  # a verdict from before verdicts named their request
            return False
        if "others" not in seen and len(monitor._verdicts) == 2:
            seen["others"] = trigger.in_flight  # both were folded in: still in flight?
            _verdict(s, 4, seen["request"])
        return "others" in seen and trigger.in_flight is None

    monitor.run(until=until, idle_timeout_s=30)
    assert seen["request"] is not None
    assert seen["others"] == seen["request"], "a verdict for another request cleared it"
    assert monitor.monitors["m1"].trigger.in_flight is None


def _concept_request(s: Settings, window_end: datetime) -> RetrainRequest:
    request = RetrainRequest(
        event_id=uuid.uuid4().hex, request_id="concept-m1-1", model="m1", reason="concept",
        base_version=1, window_start=T0, window_end=window_end, change_point=T0,
        episode_id="concept-m1-1", requested_at=datetime.now(UTC))
    with EventProducer(s, "test") as producer:
        producer.send(s.topic("retrain.requests"), request, key="m1")
    return request


def _promote_verdict(s: Settings, request_id: str) -> None:
    with EventProducer(s, "test") as producer:
        producer.send(s.topic("models.verdicts"), ShadowVerdict(
            event_id=uuid.uuid4().hex, model="m1", candidate=2, champion=1,
            samples=100, metric="log_loss", candidate_metric=0.4, champion_metric=0.5,
            test=PairedTest(method="t", statistic=3.0, p_value=0.001, mean_difference=0.1,
                            relative_improvement=0.2),
            decision="promote", reason="better", decided_at=datetime.now(UTC),
            request_id=request_id), key="m1")


def test_drift_during_the_online_learners_episode_joins_it_then_asks_once_it_closed(
    settings: Settings,
) -> None:
    """Bugs caught: a second request for one change (drift asking while the concept
    episode is open); the concept request counted as this monitor's own firing, so its
    cooldown (15 min of event time: these windows span seconds) silences the monitor
    after the episode closed."""
    s = _settings(settings)
    concept = _concept_request(s, window_end=T0 + timedelta(seconds=1))
    _produce(s, [*_events(_frame(WINDOW, 1), 0),
                 *_events(_frame(4 * WINDOW, 2, shift=0.8), WINDOW)])
    monitor = DriftMonitor(s, references=StaticReferences({"m1": _reference("snap-a")}))
    seen: dict[str, Any] = {}

    def until() -> bool:
        if monitor.stats.windows >= 5 and "first" not in seen:
            seen["first"] = (monitor.stats.requests, monitor.stats.joined)
            _promote_verdict(s, concept.request_id)  # the episode closed with a promotion
            _produce(s, _events(_frame(3 * WINDOW, 3, shift=0.8), 5 * WINDOW))
        return monitor.stats.windows >= 8

    monitor.run(until=until, idle_timeout_s=60)
    assert seen["first"] == (0, 1), "asked again while the concept episode was open"
    events = _read(s, "retrain.episodes", EpisodeEvent, 2)
    joined = [e for e in events if e.status == "joined"]
    assert [(e.episode_id, e.detector) for e in joined] == [(concept.episode_id, "drift")]
    drifted = {r.event_id for r in _read(s, "drift.reports", DriftReport, 8) if r.drifted}
    assert len(joined[0].evidence) == 2 and set(joined[0].evidence) <= drifted
    requests = _read(s, "retrain.requests", RetrainRequest, 2)
    covariate = [r for r in requests if r.reason == "covariate"]
    assert len(covariate) == 1 and monitor.stats.joined == 1
    reports = {r.event_id: r for r in _read(s, "drift.reports", DriftReport, 8)}
    streak = [reports[i] for i in covariate[0].drift_report_ids]
    assert not set(covariate[0].drift_report_ids) & set(joined[0].evidence)
    assert covariate[0].change_point == min(r.window.start_time for r in streak)
    assert [e.status for e in events if e.episode_id == covariate[0].episode_id] == ["opened"]
