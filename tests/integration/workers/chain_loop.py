"""The whole continuous-learning loop for the trace-chain and metrics tests.

Not a test module: :func:`prepare` builds a private Feast repo (fraud domain), writes a
labelled history, registers a deliberately undertrained champion v1 (two optimizer
steps, so a fine-tuned candidate is genuinely better) and returns settings with small
windows and shadow looks. :class:`Loop` runs the real services (ingest, drift, train,
shadow) in threads of this process, each with its own in-memory telemetry, and feeds
them live traffic: covariate drift (so the monitor asks for a retrain) and a concept
change (so the candidate fine-tuned on the drifted window beats the champion).
Nothing is mocked: the broker, the Feast store, the registry and torch are real.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from confluent_kafka import Consumer

from services.features.feast_repo import apply_repo, copy_repo, load_model_spec, open_repo
from services.features.generate import (
    ConceptShift,
    CovariateShift,
    DriftSpec,
    Generator,
    GeneratorConfig,
    frame_to_events,
)
from services.features.history import write_history
from services.features.snapshot import create_snapshot, load_snapshot_frame
from services.observability.setup import InMemoryTelemetry, in_memory_telemetry
from services.registry.store import ModelRegistry
from services.training.config import load_config
from services.training.runner import TrainingJob, run_job
from streams.contracts import LabelEvent
from streams.producer import EventProducer
from streams.settings import Settings

MODEL = "fraud"
EPS = 50.0  # events per second of event time
HISTORY_END = datetime(2026, 6, 1, tzinfo=UTC)
LIVE_START = HISTORY_END + timedelta(seconds=1)
WINDOW = 500
SHIFTED = ("amount", "merchant_risk_score", "distance_from_home_km", "minutes_since_last_txn",
           "hour_of_day", "card_age_days", "account_balance")
MODEL_OPTIONS: dict[str, Any] = {
    "drift": {"window_events": WINDOW, "window_seconds": 3600, "idle_flush_seconds": 3600},
    "training": {"max_steps": 150, "eval_every_steps": 25, "optimizer": {"lr": 0.01},
                 "checkpoint": {"every_steps": 50}},
    "shadow": {"min_pairs": 200, "look_every": 200, "max_pairs": 1000},
    "rollback": {"window": 2000, "min_events": 100, "look_every": 100, "margin": 0.05},
}


@dataclass
class World:
    """What :func:`prepare` made: settings, the Feast repo and project, the champion."""

    settings: Settings
    repo: Path
    project: str
    registry: ModelRegistry
    champion: int

    def store(self) -> Any:
        """A fresh FeatureStore over the private repo (one per service and thread)."""
        return open_repo("embedded", repo_path=self.repo, project=self.project)


def prepare(settings: Settings, tmp_path: Path) -> World:
    """Feast repo + history + undertrained champion v1; settings with small windows."""
    repo = copy_repo(tmp_path / "repo")
    project = f"t_{uuid.uuid4().hex[:12]}"
    settings = settings.model_copy(update={
        "feast": settings.feast.model_copy(update={"repo": repo, "project": project})}
    ).with_models({MODEL: MODEL_OPTIONS})
    store = open_repo("embedded", repo_path=repo, project=project)
    apply_repo(store)
    spec = load_model_spec(store, MODEL)
    history = Generator(GeneratorConfig(seed=21, events_per_second=EPS)).history(
        HISTORY_END, 3000)
    write_history(store, history)
    base = create_snapshot(store, spec, HISTORY_END - timedelta(days=1), HISTORY_END,
                           cache_root=settings.state_dir / "profiles")
    registry = ModelRegistry(settings.registry_uri)
    v1 = run_job(
        TrainingJob(model=MODEL, request_id="initial", reason="manual",
                    training_snapshot_id=base.snapshot_id,
                    fresh=load_snapshot_frame(store, base.snapshot_id)),
        spec, registry, settings.state_dir / "runs",
        load_config(None, {"max_steps": 2, "eval_every_steps": 1}), progress=None,
    )
    assert v1.version is not None
    registry.set_alias(MODEL, "champion", v1.version.version, expected=None)
    return World(settings, repo, project, registry, v1.version.version)


def live_generator() -> Generator:
    """Live traffic: seven features shifted (drift) and the labelling function changed."""
    return Generator(GeneratorConfig(
        seed=22, events_per_second=EPS, label_delay_s=1.0,
        drift=DriftSpec(
            covariate=tuple(CovariateShift(feature=f, start=LIVE_START, mean_shift=1.5)
                            for f in SHIFTED),
            concept=ConceptShift(start=LIVE_START),
        ),
    ))


def live_frame(first: int, count: int) -> pd.DataFrame:
    """Rows ``[first, first + count)`` of the live stream (deterministic)."""
    frame = pd.concat(list(live_generator().rows(1, LIVE_START, first + count)),
                      ignore_index=True)
    return frame.iloc[first:].reset_index(drop=True)


def produce(settings: Settings, frame: pd.DataFrame, *, labels: bool = True,
            flip_labels: bool = False, garbage: bool = False) -> int:
    """Features (and labels) of ``frame`` on the live topics; returns the events sent."""
    sent = 0
    with EventProducer(settings, "test-feed") as producer:
        if garbage:
            producer.send_raw(settings.topic("features"), b"{not json", b"x", [])
        for feature, label in frame_to_events(frame, MODEL):
            producer.send(settings.topic("features"), feature, feature.entity_id, span=False)
            if labels:
                if flip_labels:
                    label = LabelEvent(event_id=label.event_id, model=label.model,
                                       label=1.0 - label.label, event_time=label.event_time)
                producer.send(settings.topic("labels"), label, feature.entity_id, span=False)
            sent += 1
    return sent


def wait_for(check: Callable[[], bool], timeout: float, what: str,
             errors: list[BaseException] | None = None) -> None:
    """Poll ``check`` until true; fail with ``what`` after ``timeout`` (or a service error)."""
    deadline = time.monotonic() + timeout
    while not check():
        if errors:
            raise AssertionError(f"a service failed while waiting for {what}") from errors[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def read_topic(settings: Settings, topic: str, count: int, timeout: float = 20.0
               ) -> list[Any]:
    """At least ``count`` messages of one topic (raw ``Message`` objects), from the start."""
    consumer = Consumer(settings.kafka.consumer_config(f"read-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic(topic)])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            got += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    return got


def header(message: Any, key: str) -> str | None:
    for k, v in message.headers() or []:
        if k == key and v is not None:
            return v.decode() if isinstance(v, bytes) else str(v)
    return None


@dataclass
class Loop:
    """The four services in threads, each with its own in-memory telemetry."""

    world: World
    telemetry: dict[str, InMemoryTelemetry] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def build(self) -> None:
        from services.drift.references import FeastReferences
        from services.drift.service import DriftMonitor
        from services.features.ingest_service import IngestService
        from services.shadow.service import ShadowService
        from services.training.worker import TrainingWorker

        s = self.world.settings
        for name in ("ingest", "drift", "train", "shadow"):
            self.telemetry[name] = in_memory_telemetry(f"driftloop-{name}")
        self.services["ingest"] = IngestService(
            s, store=self.world.store(), models=[MODEL], flush_interval_s=0.5,
            telemetry=self.telemetry["ingest"])
        self.services["drift"] = DriftMonitor(
            s, telemetry=self.telemetry["drift"],
            references=FeastReferences(s, store=self.world.store(),
                                       registry=ModelRegistry(s.registry_uri)))
        self.services["train"] = TrainingWorker(s, telemetry=self.telemetry["train"],
                                                store=self.world.store())
        self.services["shadow"] = ShadowService(s, telemetry=self.telemetry["shadow"],
                                                batch_size=500)

    def start(self, *names: str) -> None:
        for name in names:
            service = self.services[name]

            def run(service: Any = service) -> None:
                try:
                    service.run()
                except BaseException as exc:  # reported by wait_for and stop
                    self.errors.append(exc)

            thread = threading.Thread(target=run, name=f"svc-{name}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()
        for thread in self.threads:
            thread.join(timeout=30)
        if self.errors:
            raise AssertionError("a service failed") from self.errors[0]

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        wait_for(check, timeout, what, self.errors)

    def spans(self) -> Iterator[tuple[str, Any]]:
        """``(service, span)`` for every finished span of every service."""
        for name, telemetry in self.telemetry.items():
            for span in telemetry.finished_spans():
                yield name, span


N_FIRST = 3 * WINDOW  # drifted windows: the second one fires the request
N_SHADOW = 1000  # after the candidate is in shadow: enough for looks at 200, 400, ...


def run_to_promotion(loop: Loop, *, on_training: Callable[[], None] | None = None) -> None:
    """Feed traffic until the candidate trained for the drift is promoted.

    1. the first drifted stretch (and one undecodable message) goes out; ingest writes
       it to Feast, the monitor's second drifted window fires a retrain request;
    2. the training worker joins once the stretch is in the store (its window must be
       there to be trained on), trains and registers the candidate;
    3. once the shadow service runs the candidate, more traffic (same concept) pairs
       champion and candidate losses until the sequential test promotes.
    """
    s = loop.world.settings
    ingest, train, shadow = (loop.services[n] for n in ("ingest", "train", "shadow"))
    produce(s, live_frame(0, N_FIRST), garbage=True)
    loop.start("ingest", "drift", "shadow")
    loop.wait(lambda: ingest.loop.stats.consumed >= 2 * N_FIRST + 1 and ingest.buffer.rows == 0
              and ingest.buffer.pending_labels == 0 and ingest.sink.rows > 0, 60,
              "ingest to write the first stretch")
    loop.wait(lambda: loop.services["drift"].stats.requests >= 1, 60, "a retrain request")
    loop.start("train")
    if on_training is not None:
        on_training()
    loop.wait(lambda: bool(shadow.book.runs.get(MODEL)), 90, "the candidate in shadow")
    assert train.stats.trained == 1, train.stats
    produce(s, live_frame(N_FIRST, N_SHADOW))
    loop.wait(lambda: any(getattr(e, "cause", None) == "shadow" for e in shadow.published),
              60, "the shadow promotion")
