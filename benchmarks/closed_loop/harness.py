"""One scenario of one task and seed through every real service, in its own directory.

In order: an embedded broker of its own with every topic; a private Feast repo holding
the benchmark's models (:mod:`.feast_models`); the scenario's history loaded the way
``driftloop data load`` loads a file; a snapshot and champion v1 trained from scratch
(``driftloop train``'s path: :func:`services.training.runner.run_job`); then ingest,
drift, train, shadow and online (``services.cli.services.build_service``, one thread
each) while the live stream is produced at accelerated event time: as fast as the drift
monitor keeps up, at most ``lead_windows`` windows ahead of its reports (and at most
``max_rate`` events/s), labels trailing their events by the scenario's label delay
(:func:`services.features.replay.replay`). A reader of the output topics folds what
the loop produced into a :class:`~.tally.Tally`.

The run ends once every event is reported on and no retrain request is unanswered
(or after ``drain_s`` more seconds, or at ``timeout_s``). Then the services stop, each
promoted version's drift reference (its manifest's training snapshot) is read from the
Feast store to count its rows from before the change, and the losses are measured on
held-out rows of the data's final state: champion v1, the final champion (both loaded
from the registry and scored by :mod:`services.model.scoring`), and, for scenarios with
a change, an oracle trained from scratch (same steps as v1) on a snapshot of the
post-change rows the run ingested.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.closed_loop.scenarios import (
    FEATURES,
    LABEL,
    Scenario,
    heldout_frame,
    history_frame,
    live_frame,
)
from benchmarks.closed_loop.tally import Tally
from benchmarks.closed_loop.targets import measure, reference_figures
from streams.contracts import (
    DriftReport,
    EpisodeEvent,
    ModelCandidate,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
)
from streams.settings import Settings
from streams.tail import TopicTail

log = logging.getLogger(__name__)
SERVICES = ("ingest", "drift", "train", "shadow", "online")
FEAST_FILE = Path(__file__).resolve().parent / "feast_models.py"
WATCHED = {
    "drift.reports": DriftReport,
    "retrain.requests": RetrainRequest,
    "retrain.episodes": EpisodeEvent,
    "models.candidates": ModelCandidate,
    "models.verdicts": ShadowVerdict,
    "models.promotions": ModelPromotion,
}


@dataclass(frozen=True)
class RunOptions:
    """How big and how fast one run is (the model's section is built from these)."""

    initial_steps: int = 300  # champion v1 and the oracle, from scratch
    retrain_steps: int = 300  # each fine-tune: the same budget as v1 and the oracle
    min_fresh_rows: int = 400
    label_wait_s: float = 30.0
    retry_after_s: float = 5.0  # event time runs fast here: a retry's new data comes quickly
    refine_after_s: float = 5.0  # ... and a refinement's
    shadow_min_pairs: int = 300
    shadow_max_pairs: int = 1_500
    lead_windows: int = 2
    max_rate: float = 2_000.0  # events/s at most
    drain_s: float = 90.0  # after the last event: at most this long for answers ...
    quiet_s: float = 15.0  # ... and no longer than this without a new output event
    timeout_s: float = 600.0

    def model_options(self, scenario: Scenario) -> dict[str, Any]:
        """The ``models.<name>`` section of the run's configuration."""
        task: Any = scenario.task
        if scenario.task == "multiclass":
            task = {"kind": "multiclass", "classes": [0, 1, 2]}
        drift: dict[str, Any] = {
            "window_events": scenario.window,
            # windows close by count: their event-time limit is twice their span
            "window_seconds": 2 * scenario.window_minutes * 60.0,
            "idle_flush_seconds": 3,
        }
        if scenario.kind == "recurring":  # the model declares its daily cycle
            drift["seasonality"] = {"period": "P1D", "buckets": 24}
        return {
            "task": task,
            "drift": drift,
            "training": {"max_steps": self.retrain_steps, "eval_every_steps": 25},
            "retrain": {"min_fresh_rows": self.min_fresh_rows,
                        "label_wait_s": self.label_wait_s,
                        "retry_after_s": self.retry_after_s,
                        "refine_after_s": self.refine_after_s},
            "shadow": {"min_pairs": self.shadow_min_pairs,
                       "look_every": self.shadow_min_pairs,
                       "max_pairs": self.shadow_max_pairs},
        }


def _settings(workdir: Path, address: str, scenario: Scenario, options: RunOptions) -> Settings:
    from streams.settings import load_settings

    settings = load_settings(
        kafka={"bootstrap_servers": address},
        topics={"prefix": f"cl{uuid.uuid4().hex[:6]}.", "partitions": 3},
        state_dir=workdir / "state",
        registry_uri=str(workdir / "registry"),
        feast={"repo": workdir / "feature_repo", "variant": "embedded"},
        observability={"progress": "none", "otel_file": workdir / "otel.jsonl",
                       "otel": {"OTEL_SDK_DISABLED": "true"}},
    )
    return settings.with_models({scenario.model: options.model_options(scenario)})


def _champion_v1(settings: Settings, scenario: Scenario, options: RunOptions,
                 workdir: Path) -> tuple[Any, Any]:
    """Feast repo, history, snapshot and champion v1; returns ``(store, layout)``."""
    from services.features.feast_repo import apply_repo, copy_repo, load_layout, open_store
    from services.features.load import load_file
    from services.features.snapshot import create_snapshot, load_snapshot_frame
    from services.registry.store import ModelRegistry
    from services.training.runner import TrainingJob, run_job

    repo = copy_repo(workdir / "feature_repo")
    shutil.copy(FEAST_FILE, repo / "closed_loop_models.py")
    store = open_store(settings)
    apply_repo(store)
    layout = load_layout(store, scenario.model)
    model = settings.model(scenario.model)
    history = history_frame(scenario)
    path = workdir / "history.parquet"
    history.to_parquet(path, index=False)
    load_file(path, layout, model.task)
    start = history["event_timestamp"].min().to_pydatetime()
    end = history["event_timestamp"].max().to_pydatetime() + timedelta(seconds=1)
    snapshot = create_snapshot(store, layout.spec, start, end,
                               cache_root=workdir / "state" / "profiles", task=model.task)
    registry = ModelRegistry(settings.registry_uri)
    outcome = run_job(
        TrainingJob(model=scenario.model, request_id=f"initial:{snapshot.snapshot_id}",
                    reason="manual", training_snapshot_id=snapshot.snapshot_id,
                    fresh=load_snapshot_frame(store, snapshot.snapshot_id),
                    window_start=start, window_end=end),
        layout.spec, registry, workdir / "state" / "runs",
        model.training.with_overrides({"max_steps": options.initial_steps}),
        progress=None, task=model.task, factory=model.factory,
    )
    assert outcome.version is not None
    registry.set_alias(scenario.model, "champion", outcome.version.version, expected=None)
    return store, layout


def _paced_pairs(scenario: Scenario, layout: Any, task: Any, reported: Callable[[], int],
                 lead: int, stop: threading.Event) -> Iterator[Any]:
    """The live stream's ``(feature, label)`` events, held back while the drift monitor
    has reported on fewer than ``sent - lead`` events."""
    from services.features.load import prepare_chunk
    from services.features.send import row_events

    frame = prepare_chunk(live_frame(scenario), layout, task)
    for i, pair in enumerate(row_events(frame, layout)):
        if i % scenario.window == 0:
            while reported() < i - lead and not stop.is_set():
                time.sleep(0.02)
        if stop.is_set():
            return
        yield pair


class _Producer(threading.Thread):
    """Sends the paced live stream; records when it finished and any error."""

    def __init__(self, settings: Settings, pairs: Iterator[Any], rate: float,
                 flush_every: int) -> None:
        super().__init__(name="closed-loop-producer", daemon=True)
        self.settings, self.pairs, self.rate, self.flush_every = settings, pairs, rate, flush_every
        self.finished_at: float | None = None
        self.error: str | None = None
        self.sent = 0

    def run(self) -> None:
        from services.features.replay import replay
        from streams.producer import EventProducer

        try:
            with EventProducer(self.settings, "closed-loop-bench") as producer:
                stats = replay(producer, self.settings, self.pairs, rate=self.rate,
                               flush_every=self.flush_every)
                self.sent = stats.features
        except Exception as exc:  # recorded: the run reports it instead of hanging
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.finished_at = time.monotonic()


def _loop(settings: Settings, scenario: Scenario, options: RunOptions, layout: Any,
          tally: Tally) -> dict[str, Any]:
    """Run the services and the stream until the loop settles; returns how it ended."""
    from services.cli.services import build_service

    services = {name: build_service(name, settings) for name in SERVICES}
    failures: list[str] = []

    def guarded(service: Any) -> None:
        try:
            service.run()
        except BaseException as exc:
            failures.append(f"{service.name}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=guarded, args=(s,), name=n, daemon=True)
               for n, s in services.items()]
    for thread in threads:
        thread.start()
    reader = TopicTail(settings, {settings.topic(name): kind for name, kind in WATCHED.items()},
                       name="closed-loop-bench")
    reported = {"events": 0}
    stop = threading.Event()
    task = settings.model(scenario.model).task
    producer = _Producer(settings, _paced_pairs(
        scenario, layout, task, lambda: reported["events"],
        options.lead_windows * scenario.window, stop), options.max_rate, scenario.window)
    started = time.monotonic()
    producer.start()
    ended, quiet_since, last_output = "settled", None, time.monotonic()
    try:
        while True:
            events = reader.drain(timeout=0.1)
            for event in events:
                tally.fold(event)
            reported["events"] = tally.reported_events
            now = time.monotonic()
            last_output = now if events else last_output
            if failures or not all(t.is_alive() for t in threads):
                ended = "service stopped: " + "; ".join(failures or ["(no error)"])
                break
            if producer.error:
                ended = f"producer failed: {producer.error}"
                break
            if now - started > options.timeout_s:
                ended = "timeout"
                break
            if producer.finished_at is not None:
                if reported["events"] >= scenario.events and not tally.pending():
                    quiet_since = quiet_since or now
                    if now - quiet_since >= 3.0:
                        break
                else:
                    quiet_since = None
                # Without traffic a candidate in shadow is never decided: once the output
                # topics are quiet, what is unanswered stays unanswered.
                idle = reported["events"] >= scenario.events and now - last_output > (
                    options.quiet_s)
                if idle or now - producer.finished_at > options.drain_s:
                    ended = f"{len(tally.pending())} requests unanswered at the end"
                    break
            time.sleep(0.2)
    finally:
        stop.set()
        for service in services.values():
            service.stop()
        for thread in threads:
            thread.join(60)
        producer.join(30)
        for event in reader.drain(timeout=1.0):
            tally.fold(event)
        reader.close()
    return {"ended": ended, "loop_s": round(time.monotonic() - started, 1),
            "sent": producer.sent, "undecodable": reader.undecodable}


def _losses(settings: Settings, store: Any, layout: Any, scenario: Scenario,
            options: RunOptions, workdir: Path) -> dict[str, Any]:
    """Held-out post-change loss of v1, the final champion and (with a change) the oracle."""
    from services.features.snapshot import create_snapshot, load_snapshot_frame
    from services.model.scoring import Scorer, load_scorer
    from services.registry.store import ModelRegistry
    from services.training.runner import TrainingJob, run_job

    model = settings.model(scenario.model)
    task = model.task
    heldout = heldout_frame(scenario)
    rows, labels = heldout[list(FEATURES)], heldout[LABEL].to_numpy()

    def loss(scorer: Scorer) -> float:
        return round(float(np.mean(task.batch_loss(labels, scorer.predict(rows)))), 5)

    registry = ModelRegistry(settings.registry_uri)
    final = registry.get_alias(scenario.model, "champion")
    out: dict[str, Any] = {"v1": loss(load_scorer(registry, scenario.model, 1)),
                           "final_version": final,
                           "final": loss(load_scorer(registry, scenario.model, final or 1))}
    if scenario.settled_time is None:
        return out
    end = scenario.live_start + timedelta(seconds=scenario.offset_s(scenario.events) + 1)
    snapshot = create_snapshot(store, layout.spec, scenario.settled_time, end,
                               with_profile=False, task=task)
    oracle_registry = ModelRegistry(str(workdir / "oracle-registry"))
    outcome = run_job(
        TrainingJob(model=scenario.model, request_id=f"oracle:{snapshot.snapshot_id}",
                    reason="manual", training_snapshot_id=snapshot.snapshot_id,
                    fresh=load_snapshot_frame(store, snapshot.snapshot_id)),
        layout.spec, oracle_registry, workdir / "oracle-runs",
        model.training.with_overrides({"max_steps": options.initial_steps}),
        progress=None, task=task, factory=model.factory,
    )
    assert outcome.version is not None
    out["oracle"] = loss(load_scorer(oracle_registry, scenario.model,
                                     outcome.version.version))
    out["oracle_rows"] = snapshot.rows
    return out


def _references(settings: Settings, store: Any, scenario: Scenario,
                tally: Tally) -> dict[int, dict[str, Any]]:
    """Per promoted version, its drift reference's make-up: the training snapshot its
    manifest names (what the drift monitor compares with once it is champion), read from
    the Feast store by event time; a version that cannot be read records why."""
    from services.features.feast_repo import TIMESTAMP_COLUMN
    from services.features.snapshot import load_snapshot_frame
    from services.registry.store import ModelRegistry

    registry = ModelRegistry(settings.registry_uri)
    out: dict[int, dict[str, Any]] = {}
    for p in tally.shadow_promotions():
        try:
            snapshot_id = registry.manifest(scenario.model,
                                            p.new_champion).lineage.training_snapshot_id
            frame = load_snapshot_frame(store, snapshot_id)
            out[p.new_champion] = reference_figures(snapshot_id, frame[TIMESTAMP_COLUMN],
                                                    scenario)
        except Exception as exc:  # reported (the target fails it), not the run's end
            log.exception("closed-loop: v%d's reference not measured", p.new_champion)
            out[p.new_champion] = {"reference_error": f"{type(exc).__name__}: {exc}"}
    return out


def _quiet_logs(workdir: Path) -> None:
    """Service logs go to the run's file; the console holds the benchmark's table."""
    from services.cli.logs import JsonLineFormatter

    handler = logging.FileHandler(workdir / "services.log")
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    root._driftloop_configured = True  # type: ignore[attr-defined]
    logging.captureWarnings(True)  # library warnings go to the file too
    warnings.simplefilter("ignore", ResourceWarning)


def run_scenario(scenario: Scenario, options: RunOptions, workdir: Path) -> dict[str, Any]:
    """Run one scenario in ``workdir`` (fresh broker, repo, registry); its result."""
    from streams.admin import create_topics
    from streams.broker import EmbeddedBroker, free_port

    workdir.mkdir(parents=True, exist_ok=True)
    _quiet_logs(workdir)
    started = time.monotonic()
    broker = EmbeddedBroker(workdir / "broker", port=free_port())
    broker.start()
    try:
        settings = _settings(workdir, broker.address, scenario, options)
        create_topics(settings)
        store, layout = _champion_v1(settings, scenario, options, workdir)
        setup_s = round(time.monotonic() - started, 1)
        tally = Tally(scenario.model, min_window_events=settings.model(
            scenario.model).drift.min_window_events)
        run = _loop(settings, scenario, options, layout, tally)
    finally:
        broker.stop()
    measures = measure(scenario, tally, _references(settings, store, scenario, tally))
    measures["losses"] = _losses(settings, store, layout, scenario, options, workdir)
    return {"scenario": scenario.name, "task": scenario.task, "seed": scenario.seed,
            "shape": {k: v for k, v in asdict(scenario).items() if k != "start"},
            "live_start": scenario.live_start.isoformat(), "setup_s": setup_s, **run,
            "total_s": round(time.monotonic() - started, 1), **measures}


def child(scenario: Scenario, options: RunOptions, workdir: str, queue: Any) -> None:
    """:func:`benchmarks.children.run_in_child`'s target: one run in a fresh process."""
    try:
        queue.put(run_scenario(scenario, options, Path(workdir)))
    except Exception as exc:
        log.exception("closed-loop run failed")
        queue.put({"scenario": scenario.name, "task": scenario.task, "seed": scenario.seed,
                   "error": f"{type(exc).__name__}: {exc}"})

