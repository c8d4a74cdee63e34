"""The training worker over the real broker, a real Feast store and real torch.

A retrain request for a shifted window yields exactly one registered candidate,
fine-tuned from the champion, whose manifest names the exact snapshots used, and
whose training span is a child of the request's decision span. The same request
delivered again yields no second version. A request whose window's labels do not fit
the model's task is answered failed (dead letter ``training_failed`` naming the label
column and value), registers nothing and is not retried.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer

import services.features.snapshot as snapshot_module
from services.features.feast_repo import load_model_spec
from services.features.generate import CovariateShift, DriftSpec, Generator, GeneratorConfig
from services.features.history import write_history
from services.features.snapshot import create_snapshot, load_snapshot_frame
from services.observability.setup import in_memory_telemetry
from services.registry.store import ModelRegistry
from services.training.config import load_config
from services.training.runner import TrainingJob, run_job
from services.training.worker import TrainingWorker
from streams.codec import decode
from streams.contracts import ModelCandidate, RetrainRequest, new_event_id
from streams.deadletter import DETAIL_HEADER, REASON_HEADER
from streams.producer import EventProducer
from streams.settings import Settings, load_settings
from streams.tracing import header_value

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::RuntimeWarning")]
HISTORY_END = datetime(2026, 6, 1, tzinfo=UTC)
STEPS = 80


@pytest.fixture
def store(embedded_store: Any) -> Any:
    """The test's own embedded Feast repo (``conftest.embedded_store``)."""
    return embedded_store


def _candidates(settings: Settings, count: int, timeout: float = 60) -> list[Any]:
    consumer = Consumer(settings.kafka.consumer_config(f"c-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic("models.candidates")])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += [m for m in consumer.consume(10, timeout=0.5) if m.error() is None]
    consumer.close()
    return got


def test_request_yields_one_fine_tuned_candidate_with_lineage_and_trace(
    store: Any, settings: Settings
) -> None:
    settings = load_settings(**{**settings.model_dump(),
                                "models": {"fraud": {"training": {"max_steps": STEPS}}}})
    spec = load_model_spec(store, "fraud")
    gen = Generator(GeneratorConfig(seed=7, events_per_second=50.0))
    history = gen.history(HISTORY_END, 4000)
    write_history(store, history)
    base = create_snapshot(store, spec, HISTORY_END - timedelta(days=2), HISTORY_END,
                           with_profile=False)
    registry = ModelRegistry(settings.registry_uri)
    config = load_config(None, {"max_steps": STEPS})
    first = run_job(
        TrainingJob(model="fraud", request_id="initial", reason="manual",
                    training_snapshot_id=base.snapshot_id,
                    fresh=load_snapshot_frame(store, base.snapshot_id)),
        spec, registry, settings.state_dir / "runs", config, progress=None,
    )
    assert first.version is not None
    registry.set_alias("fraud", "champion", first.version.version, expected=None)

    shifted = Generator(GeneratorConfig(
        seed=8, events_per_second=50.0,
        drift=DriftSpec(covariate=tuple(
            CovariateShift(feature=name, start=HISTORY_END, mean_shift=1.0)
            for name in ("amount", "merchant_risk_score"))),
    ))
    window_end = HISTORY_END + timedelta(seconds=2000 / 50.0)
    fresh = shifted.history(window_end, 2000)
    write_history(store, fresh, mode="append")

    telemetry = in_memory_telemetry("driftloop-train-test")
    request = RetrainRequest(
        event_id=new_event_id(), request_id=f"req-{uuid.uuid4().hex[:8]}", model="fraud",
        reason="covariate", base_version=first.version.version,
        window_start=HISTORY_END, window_end=window_end + timedelta(seconds=1),
        drift_report_ids=["r1", "r2"], requested_at=datetime.now(UTC),
    )
    with telemetry.tracer.start_as_current_span("retrain decision") as decision:
        decision_ctx = decision.get_span_context()
        with EventProducer(settings, "test", tracer=telemetry.tracer) as producer:
            producer.send(settings.topic("retrain.requests"), request, key="fraud")
            producer.send(settings.topic("retrain.requests"), request, key="fraud")

    worker = TrainingWorker(settings, telemetry=telemetry, store=store)
    worker.run(until=lambda: worker.stats.trained + worker.stats.duplicates >= 2,
               idle_timeout_s=120)
    assert worker.stats.trained == 1 and worker.stats.duplicates == 1
    assert registry.list_versions("fraud") == [1, 2]

    manifest = registry.manifest("fraud", 2)
    lineage = manifest.lineage
    assert lineage.parent_version == 1
    assert lineage.request_id == request.request_id
    assert lineage.parent_snapshot_id == base.snapshot_id
    window_snapshot = lineage.training_snapshot_id
    assert window_snapshot != base.snapshot_id
    assert len(load_snapshot_frame(store, window_snapshot)) == 2000
    assert manifest.extra["fine_tuned"] is True

    letters = _candidates(settings, 2)
    events = [decode(m.value(), ModelCandidate) for m in letters]
    assert {e.version for e in events} == {2}
    assert all(e.sha256 == registry.get("fraud", 2).manifest_sha256 for e in events)
    assert all(e.parent_version == 1 and e.request_id == request.request_id for e in events)

    finished = telemetry.finished_spans()
    runs = [s for s in finished if s.name == "training run"]
    assert len(runs) == 2
    run_span, duplicate_span = sorted(runs, key=lambda s: bool(s.attributes.get(
        "driftloop.duplicate")))
    assert duplicate_span.attributes["driftloop.duplicate"] is True
    spans = {s.name: s for s in finished}
    assert run_span.context.trace_id == decision_ctx.trace_id
    send_request = [s for s in telemetry.finished_spans()
                    if s.name == f"send {settings.topic('retrain.requests')}"]
    assert run_span.parent.span_id in {s.context.span_id for s in send_request}
    assert any(e.name == "checkpoint.written" for e in run_span.events)
    assert spans["register candidate"].parent.span_id == run_span.context.span_id


def _dead_letters(settings: Settings, count: int, timeout: float = 30) -> list[tuple[str, str]]:
    consumer = Consumer(settings.kafka.consumer_config(f"d-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic("deadletter")])
    got: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for m in consumer.consume(10, timeout=0.5):
            if m.error() is None:
                h = m.headers()
                got.append((header_value(h, REASON_HEADER), header_value(h, DETAIL_HEADER)))
    consumer.close()
    return got


def test_labels_that_do_not_fit_the_task_fail_the_request_once(
    store: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The champion was trained as binary; the model is now declared multiclass with
    classes 5 and 6: its 0/1 labels must be refused, not trained into a candidate. Tried
    once (``retrain.attempts`` is 3: a refusal is not a transient failure), handled once."""
    settings = load_settings(**{**settings.model_dump(), "models": {"fraud": {
        "task": {"kind": "multiclass", "classes": [5, 6]},
        "training": {"max_steps": 20},
        "retrain": {"min_fresh_rows": 1, "label_wait_s": 0, "attempts": 3},
    }}})
    spec = load_model_spec(store, "fraud")
    write_history(store, Generator(GeneratorConfig(seed=7, events_per_second=50.0)).history(
        HISTORY_END, 1500))
    base = create_snapshot(store, spec, HISTORY_END - timedelta(days=2), HISTORY_END,
                           with_profile=False)
    registry = ModelRegistry(settings.registry_uri)
    first = run_job(
        TrainingJob(model="fraud", request_id="initial", reason="manual",
                    training_snapshot_id=base.snapshot_id,
                    fresh=load_snapshot_frame(store, base.snapshot_id)),
        spec, registry, settings.state_dir / "runs", load_config(None, {"max_steps": 20}),
        progress=None,
    )
    assert first.version is not None
    registry.set_alias("fraud", "champion", first.version.version, expected=None)

    request = RetrainRequest(
        event_id=new_event_id(), request_id=f"req-{uuid.uuid4().hex[:8]}", model="fraud",
        reason="manual", base_version=1, window_start=HISTORY_END - timedelta(hours=6),
        window_end=HISTORY_END, drift_report_ids=[], requested_at=datetime.now(UTC),
    )
    with EventProducer(settings, "test") as producer:
        producer.send(settings.topic("retrain.requests"), request, key="fraud")

    # each try of the request builds the window's snapshot (where its labels are refused)
    snapshots: list[tuple[Any, ...]] = []

    def counted_snapshot(*args: Any, **kwargs: Any) -> Any:
        snapshots.append(args[2:4])  # the fresh window
        return create_snapshot(*args, **kwargs)

    monkeypatch.setattr(snapshot_module, "create_snapshot", counted_snapshot)
    telemetry = in_memory_telemetry("train-once")
    worker = TrainingWorker(settings, store=store, telemetry=telemetry)
    worker.run(until=lambda: worker.stats.failed >= 1, idle_timeout_s=120)
    assert worker.stats.failed == 1 and worker.stats.trained == 0
    assert len(snapshots) == 1, f"{len(snapshots)} tries of the request: {snapshots}"
    runs = [s for s in telemetry.span_exporter.get_finished_spans() if s.name == "training run"]
    assert len(runs) == 1, f"the request was handled {len(runs)} times"
    assert not [e for e in runs[0].events if e.name == "retry"]
    assert registry.list_versions("fraud") == [1]
    (reason, detail), = _dead_letters(settings, 1)
    assert reason == "training_failed"
    assert f"{spec.label}: a label is one of the classes [5, 6], got " in detail
