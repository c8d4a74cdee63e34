"""A round trip of every event type through the broker: what the foundation promises.

Produces one valid event of each contract to its topic plus one malformed message,
consumes them back with the same loop the services use, and checks that each event
returns equal with its ``event_id`` and ``traceparent`` headers and that the bad one
landed in the dead-letter topic with its reason.

It never touches the configured topics: :func:`run_private_round_trip` creates a set
under a prefix of its own (``<prefix>roundtrip-<random>.``), runs there and deletes
them, so ``driftloop report`` and the services never see its sample events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import trace

from services.model.task import Task
from streams.consumer import ConsumerLoop, Inbound
from streams.contracts import (
    DriftReport,
    EpisodeEvent,
    Event,
    FeatureDrift,
    FeatureEvent,
    LabelEvent,
    ModelCandidate,
    ModelPromotion,
    PairedTest,
    PartitionRange,
    RetrainRequest,
    ShadowVerdict,
    WindowBounds,
    new_event_id,
)
from streams.deadletter import REASON_HEADER
from streams.producer import EventProducer
from streams.settings import Settings
from streams.tail import TopicTail
from streams.tracing import header_value


def sample_events(model: str = "fraud") -> dict[str, Event]:
    """One valid event per topic, keyed by logical topic name."""
    now = datetime.now(UTC).replace(microsecond=0)
    feature_id = new_event_id()
    report_id = new_event_id()
    request_id = new_event_id()
    return {
        "features": FeatureEvent(
            event_id=feature_id, model=model, entity_id="card-42", event_time=now,
            features={"amount": 12.5, "channel": "online", "merchant_risk_score": None},
        ),
        "labels": LabelEvent(event_id=feature_id, model=model, label=1.0, event_time=now),
        "drift.reports": DriftReport(
            event_id=report_id, model=model,
            window=WindowBounds(
                start_time=now - timedelta(seconds=60), end_time=now, n_events=5000,
                offsets=[PartitionRange(topic="features", partition=0, first_offset=0,
                                        last_offset=4999)],
            ),
            reference_snapshot_id="0" * 16, champion_version=1,
            features=[FeatureDrift(name="amount", kind="numeric", psi=0.31, ks_statistic=0.12,
                                   ks_pvalue=1e-9, missing_share=0.0, drifted=True)],
            drifted_share=1.0, drifted=True, created_at=now,
        ),
        "retrain.requests": RetrainRequest(
            event_id=new_event_id(), request_id=request_id, model=model, reason="covariate",
            base_version=1, window_start=now - timedelta(seconds=60), window_end=now,
            drift_report_ids=[report_id], requested_at=now,
            change_point=now - timedelta(seconds=60), episode_id=request_id, attempt=1,
        ),
        "retrain.episodes": EpisodeEvent(
            event_id=new_event_id(), episode_id=request_id, model=model, status="opened",
            request_id=request_id, detector="drift", reason="covariate",
            change_point=now - timedelta(seconds=60), evidence=[report_id], at=now,
        ),
        "models.candidates": ModelCandidate(
            event_id=new_event_id(), model=model, version=2, parent_version=1,
            request_id=request_id, registry_uri="file:///registry/fraud/versions/2",
            sha256="ab" * 32,
        ),
        "models.verdicts": ShadowVerdict(
            event_id=new_event_id(), model=model, candidate=2, champion=1, samples=2000,
            # the sample model is binary (its label above is 1.0): its loss names the metric
            metric=Task(kind="binary").loss_name, candidate_metric=0.31, champion_metric=0.35,
            test=PairedTest(method="paired_t", statistic=4.2, p_value=1e-5,
                            mean_difference=0.04, relative_improvement=0.114),
            decision="promote", reason="better by 11.4%", decided_at=now,
        ),
        "models.promotions": ModelPromotion(
            event_id=new_event_id(), model=model, new_champion=2, previous_champion=1,
            cause="shadow", promoted_at=now,
        ),
    }


@dataclass
class RoundTripResult:
    """What came back for each topic."""

    sent: dict[str, Event]
    received: dict[str, Event]
    traced: dict[str, bool]
    dead_letter_reason: str | None

    @property
    def ok(self) -> bool:
        return (
            all(self.received.get(t) == e for t, e in self.sent.items())
            and all(self.traced.values())
            and self.dead_letter_reason == "not_json"
        )


def run_round_trip(settings: Settings, *, timeout_s: float = 60.0) -> RoundTripResult:
    """Send every event type plus one malformed message and read them all back."""
    events = sample_events()
    tracer = trace.get_tracer("driftloop.demo")
    with EventProducer(settings, "roundtrip") as producer:
        with tracer.start_as_current_span("roundtrip"):
            for name, event in events.items():
                producer.send(settings.topic(name), event, key=event.event_id)
        producer.send_raw(settings.topic("labels"), b"{not json", b"bad", [])
    topic_types: dict[str, type[Event]] = {settings.topic(n): type(e) for n, e in events.items()}
    received: dict[str, Event] = {}
    traced: dict[str, bool] = {}
    by_topic = {settings.topic(n): n for n in events}

    def handle(batch: list[Inbound[Any]]) -> None:
        for inbound in batch:
            name = by_topic[inbound.topic]
            received[name] = inbound.event
            traced[name] = (
                header_value(inbound.headers, "event_id") == inbound.event.event_id
                and header_value(inbound.headers, "traceparent") is not None
            )
        return None

    loop = ConsumerLoop(
        settings, group_id=f"roundtrip-{new_event_id()[:8]}", topics=topic_types,
        handle_batch=handle, service_name="roundtrip",
    )
    loop.run(until=lambda: len(received) == len(events), idle_timeout_s=timeout_s)
    return RoundTripResult(events, received, traced, _dead_letter_reason(settings, timeout_s))


def private_settings(settings: Settings) -> Settings:
    """``settings`` with a fresh topic prefix of its own, under the configured one."""
    prefix = f"{settings.topics.prefix}roundtrip-{new_event_id()[:12]}."
    topics = settings.topics.model_copy(update={"prefix": prefix, "partitions": 1})
    return settings.model_copy(update={"topics": topics})


@dataclass
class PrivateRoundTrip:
    """A round trip on private topics: the result, the prefix and what was cleaned up."""

    result: RoundTripResult
    settings: Settings
    deleted: dict[str, str]


def run_private_round_trip(settings: Settings, *, timeout_s: float = 60.0) -> PrivateRoundTrip:
    """Create private topics, run :func:`run_round_trip` on them, delete them."""
    from streams.admin import create_topics, delete_topics

    private = private_settings(settings)
    create_topics(private, timeout=timeout_s)
    try:
        result = run_round_trip(private, timeout_s=timeout_s)
    finally:
        deleted = delete_topics(private, private.all_topics(), timeout=timeout_s)
    return PrivateRoundTrip(result, private, deleted)


def _dead_letter_reason(settings: Settings, timeout_s: float) -> str | None:
    """Dead letters are raw bytes, not events: read their topic raw."""
    with TopicTail(settings, {settings.topic("deadletter"): None}, name="roundtrip-dlq") as tail:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for record in tail.poll(timeout=0.5):
                if record.value == b"{not json":
                    return header_value(record.headers, REASON_HEADER) or ""
    return None
