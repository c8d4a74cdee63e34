"""kill -9 of every stream service at seeded random points while the loop runs.

Each service runs as a sequence of worker processes (``chaos/workers/``, forked from a
fork server that imported them once, see :mod:`chaos.kills`) on the test's embedded
broker, with its state directory and registry shared by all its lives; twenty lives are
SIGKILLed (about a quarter during start-up and group join, the rest a random moment after
their first batch), then one more runs to the end. Afterwards:

- drift: every event offset lies in the window of at least one ``drift.reports`` event,
  and the one drift episode yielded exactly one retrain request id;
- train: every retrain request has exactly one registered version, every version loads
  with its sha256 verified, every checkpoint left on disk loads and verifies, and every
  version was announced on ``models.candidates``;
- shadow: every champion the alias pointed to (as observed, and finally) has its
  ``models.promotions`` event, the promotions form one chain, the champion loads, and no
  promotion intent is left in the outbox;
- online: the events learned into the state equal the events produced, each once;
- ingest: every parquet file reads, the point-in-time training frame built from the
  offline store holds every produced event once with its values and its label (labels
  that arrived after a restart included), the online store holds each card's newest
  values, and every bad event is dead-lettered with its reason (no valid one is).

The consumer groups are kept across lives (resuming from committed offsets is the point);
``session.timeout.ms`` is 1 s in the workers, so a killed member is expelled quickly.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chaos import kills
from chaos.ledger import FaultRecorder
from chaos.topics import paced_producer, read_all
from chaos.workers import drift as drift_worker
from chaos.workers import ingest as ingest_worker
from chaos.workers import online as online_worker
from chaos.workers import shadow as shadow_worker
from chaos.workers import train as train_worker
from streams.contracts import (
    DriftReport,
    FeatureEvent,
    LabelEvent,
    ModelCandidate,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
    new_event_id,
)
from streams.producer import EventProducer
from streams.settings import Settings

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.slow]

SEED = int(os.environ.get("DRIFTLOOP_CHAOS_SEED", "20261124"))
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _base_args(settings: Settings, root: Path) -> dict[str, Any]:
    return {"bootstrap": settings.kafka.bootstrap_servers, "prefix": settings.topics.prefix,
            "state_dir": str(root / "state"), "registry": str(root / "registry")}


def _lives(tmp_path: Path, name: str, target: Any, args: dict[str, Any]) -> kills.Lives:
    root = tmp_path / f"{name}-lives"
    root.mkdir()
    return kills.Lives(root, target, args)


def _chunks(items: list[Any], n: int) -> list[list[Any]]:
    """``items`` in ``n`` consecutive slices (one per life: each life gets fresh input)."""
    size = -(-len(items) // n)
    return [items[i * size:(i + 1) * size] for i in range(n)]


# -- drift ---------------------------------------------------------------------------------

DRIFT_WINDOW = 200
DRIFT_CLEAN, DRIFT_SHIFTED = 2_000, 4_000
DRIFT_RATE = 300.0  # events/s: each life's share streams in for about 1 s


def _feature_events() -> list[FeatureEvent]:
    clean = drift_worker.frame(DRIFT_CLEAN, 1)
    shifted = drift_worker.frame(DRIFT_SHIFTED, 2, shift=0.8)
    rows = [*clean.to_dict("records"), *shifted.to_dict("records")]
    return [
        FeatureEvent(
            event_id=f"ev{i}", model=drift_worker.MODEL, entity_id=f"c{i % 97}",
            event_time=T0 + timedelta(milliseconds=10 * i),
            features={k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()},
        )
        for i, row in enumerate(rows)
    ]


@pytest.mark.timeout(240)
def test_drift_monitor_survives_kill9(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    started = time.monotonic()
    events = _feature_events()
    lives = _lives(tmp_path, "drift", drift_worker.main,
                   {**_base_args(settings, tmp_path), "window": DRIFT_WINDOW})
    plan = kills.kill_plan(SEED)
    for point, chunk in zip(plan, _chunks(events, len(plan)), strict=True):
        thread, produced = paced_producer(settings, "features", chunk, lambda e: e.entity_id,
                                          DRIFT_RATE)
        lives.kill_once(point)
        thread.join(60)
        assert produced.is_set()
    lives.run_to_end(90, final=True)

    source = read_all(settings, "features")
    reports = [r.event for r in read_all(settings, "drift.reports", DriftReport)]
    requests = [r.event for r in read_all(settings, "retrain.requests", RetrainRequest)]
    covered: dict[int, list[tuple[int, int]]] = {}
    for report in reports:
        for rng in report.window.offsets:
            covered.setdefault(rng.partition, []).append((rng.first_offset, rng.last_offset))
    uncovered = [(r.partition, r.offset) for r in source
                 if not any(a <= r.offset <= b for a, b in covered.get(r.partition, []))]
    request_ids = {r.request_id for r in requests}
    distinct_windows = {r.event_id for r in reports}
    elapsed = time.monotonic() - started
    detail = (f"seed {SEED}; {lives.summary()}; {len(source)} events, {len(reports)} reports "
              f"({len(distinct_windows)} distinct windows), {len(requests)} request events with "
              f"{len(request_ids)} id(s); {len(uncovered)} events in no report; {elapsed:.0f} s")
    print(detail)
    ledger.fault("drift monitor kill -9 (start-up and mid-batch), memory broker",
                 injected=len(lives.killed), survived=lives.recovered_after_each_kill(),
                 lost=len(uncovered), detail=detail)
    assert len(source) == len(events)
    assert len(lives.killed) == kills.KILLS_PER_SERVICE
    assert not uncovered, f"events never reported, e.g. {uncovered[:5]}"
    assert len(request_ids) == 1, f"one drift episode, request ids {sorted(request_ids)}"
    assert lives.recovered_after_each_kill() == kills.KILLS_PER_SERVICE


# -- train ---------------------------------------------------------------------------------

TRAINING = {"max_steps": 30, "eval_every_steps": 10, "batch_size": 128,
            "checkpoint": {"every_steps": 5, "keep": 3}}
TRAIN_REQUESTS = 9
TRAIN_ANCHORS: tuple[kills.Anchor, ...] = (
    (kills.START, 0.2, kills.START_DELAY_S),  # start-up, group join
    ("request ", 0.3, (0.0, 1.5)),  # a request taken up: snapshot, data, first steps
    ("checkpoint", 0.5, (0.0, 0.4)),  # mid-training, registering, publishing, committing
)
HISTORY_END = datetime(2026, 6, 1, tzinfo=UTC)


def _feast_with_champion(tmp_path: Path, registry_uri: str) -> tuple[Path, str, int]:
    """A private Feast repo with history and a shifted window, and champion v1."""
    from services.features.feast_repo import apply_repo, copy_repo, load_model_spec, open_repo
    from services.features.generate import (
        CovariateShift,
        DriftSpec,
        Generator,
        GeneratorConfig,
    )
    from services.features.history import write_history
    from services.features.snapshot import create_snapshot, load_snapshot_frame
    from services.registry.store import ModelRegistry
    from services.training.config import load_config
    from services.training.runner import TrainingJob, run_job

    repo = copy_repo(tmp_path / "repo")
    project = f"t_{uuid.uuid4().hex[:12]}"
    store = open_repo("embedded", repo_path=repo, project=project)
    apply_repo(store)
    spec = load_model_spec(store, train_worker.MODEL)
    write_history(store, Generator(GeneratorConfig(seed=7, events_per_second=50.0))
                  .history(HISTORY_END, 2000))
    base = create_snapshot(store, spec, HISTORY_END - timedelta(days=2), HISTORY_END,
                           with_profile=False)
    registry = ModelRegistry(registry_uri)
    first = run_job(
        TrainingJob(model=train_worker.MODEL, request_id="initial", reason="manual",
                    training_snapshot_id=base.snapshot_id,
                    fresh=load_snapshot_frame(store, base.snapshot_id)),
        spec, registry, tmp_path / "initial-runs", load_config(None, TRAINING), progress=None,
    )
    assert first.version is not None
    registry.set_alias(train_worker.MODEL, "champion", first.version.version, expected=None)
    shifted = Generator(GeneratorConfig(seed=8, events_per_second=50.0, drift=DriftSpec(
        covariate=(CovariateShift(feature="amount", start=HISTORY_END, mean_shift=1.0),))))
    write_history(store, shifted.history(HISTORY_END + timedelta(seconds=40), 2000),
                  mode="append")
    return repo, project, first.version.version


def _retrain_requests(base_version: int) -> list[RetrainRequest]:
    return [
        RetrainRequest(
            event_id=new_event_id(), request_id=f"req-{i}-{uuid.uuid4().hex[:6]}",
            model=train_worker.MODEL, reason="covariate", base_version=base_version,
            window_start=HISTORY_END + timedelta(seconds=2 * i),
            window_end=HISTORY_END + timedelta(seconds=41), drift_report_ids=[f"r{i}"],
            requested_at=datetime.now(UTC),
        )
        for i in range(TRAIN_REQUESTS)
    ]


@pytest.mark.timeout(300)
def test_training_worker_survives_kill9(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    from services.registry.store import ModelRegistry
    from services.training.checkpoint import list_checkpoints, load_checkpoint

    started = time.monotonic()
    args = _base_args(settings, tmp_path)
    repo, project, champion = _feast_with_champion(tmp_path, args["registry"])
    setup_s = time.monotonic() - started
    requests = _retrain_requests(champion)
    with EventProducer(settings, "chaos-source") as producer:
        for request in requests:
            producer.send(settings.topic("retrain.requests"), request, key=request.model)
    lives = _lives(tmp_path, "train", train_worker.main,
                   {**args, "repo": str(repo), "project": project, "training": TRAINING})
    for point in kills.kill_plan(SEED + 1, anchors=TRAIN_ANCHORS):
        lives.kill_once(point)
    lives.run_to_end(180, final=True, request_ids=[r.request_id for r in requests])

    registry = ModelRegistry(args["registry"])
    versions = registry.list_versions(train_worker.MODEL)
    by_request: dict[str, list[int]] = {}
    for version in versions:
        lineage = registry.manifest(train_worker.MODEL, version).lineage
        by_request.setdefault(str(lineage.request_id), []).append(version)
        registry.load(train_worker.MODEL, version)  # sha256 of every file verified
    checkpoints = [info for run in (tmp_path / "state" / "runs").iterdir()
                   for info in list_checkpoints(run)]
    for info in checkpoints:
        load_checkpoint(info)  # sha256 in the name verified, weights_only load
    announced = {r.event.version for r in read_all(settings, "models.candidates", ModelCandidate)
                 if r.event is not None}
    missing = [r.request_id for r in requests if len(by_request.get(r.request_id, [])) != 1]
    unannounced = sorted(set(versions) - {champion} - announced)
    elapsed = time.monotonic() - started
    detail = (f"seed {SEED + 1}; {lives.summary()}; {len(requests)} requests -> versions "
              f"{versions} (champion v{champion} before), {len(checkpoints)} checkpoints "
              f"verified, {len(unannounced)} versions not announced; setup {setup_s:.0f} s, "
              f"{elapsed:.0f} s")
    print(detail)
    ledger.fault("training worker kill -9 (start-up, snapshot, training, registering)",
                 injected=len(lives.killed), survived=lives.recovered_after_each_kill(),
                 lost=len(missing) + len(unannounced), detail=detail)
    assert len(lives.killed) == kills.KILLS_PER_SERVICE
    assert not missing, {r: by_request.get(r) for r in missing}
    assert len(versions) == len(requests) + 1, versions
    assert not unannounced, f"versions never published on models.candidates: {unannounced}"
    assert lives.recovered_after_each_kill() == kills.KILLS_PER_SERVICE


# -- shadow --------------------------------------------------------------------------------

SHADOW_POLICY = {"min_pairs": 200, "look_every": 200, "max_pairs": 3000}
ROLLBACK_POLICY = {"window": 300, "min_events": 100, "look_every": 100, "margin": 0.05}
SHADOW_PAIRS_PER_LIFE = 300
SHADOW_RATE = 300.0  # feature/label pairs per second
TRUE_WEIGHT = 2.0  # labels ~ Bernoulli(sigmoid(2 x)); the toy versions have w = 0.3, 1.0, 2.0


def _shadow_events(n: int, seed: int) -> list[tuple[FeatureEvent, LabelEvent]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = float(rng.normal())
        y = float(rng.random() < 1 / (1 + math.exp(-TRUE_WEIGHT * x)))
        at = T0 + timedelta(seconds=i)
        # one key: one partition per topic, consumed in the order it happened
        out.append((FeatureEvent(event_id=f"ev-{i}", model=shadow_worker.MODEL,
                                 entity_id="entity", event_time=at, features={"x": x}),
                    LabelEvent(event_id=f"ev-{i}", model=shadow_worker.MODEL, label=y,
                               event_time=at)))
    return out


class AliasWatch:
    """Polls the champion alias in a thread and remembers every value it saw."""

    def __init__(self, registry: Any, model: str) -> None:
        self.registry, self.model = registry, model
        self.seen: list[int | None] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            value = self.registry.get_alias(self.model, "champion")
            if not self.seen or self.seen[-1] != value:
                self.seen.append(value)
            time.sleep(0.02)

    def close(self) -> list[int | None]:
        self.stop.set()
        self.thread.join(5)
        return self.seen


@pytest.mark.timeout(240)
def test_shadow_service_survives_kill9(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    from services.registry.store import ModelRegistry
    from services.shadow.promotion import Outbox

    started = time.monotonic()
    args = _base_args(settings, tmp_path)
    registry = ModelRegistry(args["registry"])
    v1, _ = shadow_worker.register_toy(registry, 0.3, None)
    v2, sha2 = shadow_worker.register_toy(registry, 1.0, v1)
    v3, sha3 = shadow_worker.register_toy(registry, TRUE_WEIGHT, v2)
    registry.set_alias(shadow_worker.MODEL, "champion", v1, expected=None)

    def candidate(version: int, sha: str, parent: int) -> ModelCandidate:
        return ModelCandidate(event_id=f"cand-{version}", model=shadow_worker.MODEL,
                              version=version, parent_version=parent,
                              request_id=f"req-{version}",
                              registry_uri=registry.uri(shadow_worker.MODEL, version), sha256=sha)

    with EventProducer(settings, "chaos-source") as producer:
        producer.send(settings.topic("models.candidates"), candidate(v2, sha2, v1), "toy")
    watch = AliasWatch(registry, shadow_worker.MODEL)
    lives = _lives(tmp_path, "shadow", shadow_worker.main,
                   {**args, "shadow": SHADOW_POLICY, "rollback": ROLLBACK_POLICY})
    plan = kills.kill_plan(SEED + 2)
    pairs = _shadow_events(SHADOW_PAIRS_PER_LIFE * len(plan), SEED)
    third_sent = False

    def label(i: int, producer: EventProducer) -> None:
        producer.send(settings.topic("labels"), chunk[i][1], key="entity", span=False)

    for point, chunk in zip(plan, _chunks(pairs, len(plan)), strict=True):
        if not third_sent and registry.get_alias(shadow_worker.MODEL, "champion") == v2:
            with EventProducer(settings, "chaos-source") as producer:
                producer.send(settings.topic("models.candidates"), candidate(v3, sha3, v2),
                              "toy")
            third_sent = True
        thread, produced = paced_producer(settings, "features", [f for f, _ in chunk],
                                          lambda e: "entity", SHADOW_RATE, extra=label)
        lives.kill_once(point)
        thread.join(60)
        assert produced.is_set()
    lives.run_to_end(90, final=True)
    observed = watch.close()

    promotions = {r.event.event_id: r.event for r in
                  read_all(settings, "models.promotions", ModelPromotion) if r.event}
    verdicts = [r.event for r in read_all(settings, "models.verdicts", ShadowVerdict) if r.event]
    chain = sorted(promotions.values(), key=lambda p: p.promoted_at)
    champion = registry.get_alias(shadow_worker.MODEL, "champion")
    registry.load(shadow_worker.MODEL, "champion")  # loadable, sha256 verified
    announced = {v1} | {p.new_champion for p in chain}
    unannounced = [v for v in observed if v not in announced]
    broken = [p for prev, p in zip([None, *chain], chain, strict=False)
              if p.previous_champion != (prev.new_champion if prev else v1)]
    promoted = {v.candidate for v in verdicts if v.decision == "promote"}
    pending = Outbox(registry).pending(shadow_worker.MODEL)
    elapsed = time.monotonic() - started
    moves = [(p.previous_champion, p.new_champion, p.cause) for p in chain]
    detail = (f"seed {SEED + 2}; {lives.summary()}; {len(pairs)} labelled events; alias seen "
              f"{observed}, promotions {moves}"
              f", verdicts {sorted((v.candidate, v.decision) for v in verdicts)}; "
              f"{len(unannounced)} alias moves without an event; {elapsed:.0f} s")
    print(detail)
    ledger.fault("shadow service kill -9 (start-up and mid-batch)",
                 injected=len(lives.killed), survived=lives.recovered_after_each_kill(),
                 lost=len(unannounced) + len(broken), detail=detail)
    assert len(lives.killed) == kills.KILLS_PER_SERVICE
    assert chain, "no promotion happened: the test did not exercise the alias"
    assert not unannounced, f"alias moves without a promotion event: {unannounced}"
    assert not broken, f"promotion chain broken: {broken}"
    assert champion == chain[-1].new_champion
    assert {p.new_champion for p in chain if p.cause == "shadow"} <= promoted
    assert not pending, f"promotion intents left in the outbox: {pending}"
    assert lives.recovered_after_each_kill() == kills.KILLS_PER_SERVICE


# -- online --------------------------------------------------------------------------------

ONLINE_PER_LIFE = 200
ONLINE_RATE = 300.0


def _agrawal_events(n: int) -> list[tuple[FeatureEvent, LabelEvent]]:
    from river.datasets import synth

    out = []
    for i, (x, y) in enumerate(itertools.islice(synth.Agrawal(seed=3), n)):
        at = T0 + timedelta(seconds=i)
        feats = {k: (str(v) if k in online_worker.CATEGORICAL else float(v)) for k, v in x.items()}
        out.append((FeatureEvent(event_id=f"ev{i}", model=online_worker.MODEL,
                                 entity_id=f"c{i % 50}", event_time=at, features=feats),
                    LabelEvent(event_id=f"ev{i}", model=online_worker.MODEL, label=float(y),
                               event_time=at)))
    return out


@pytest.mark.timeout(240)
def test_online_service_survives_kill9(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    started = time.monotonic()
    plan = kills.kill_plan(SEED + 3)
    pairs = _agrawal_events(ONLINE_PER_LIFE * len(plan))
    lives = _lives(tmp_path, "online", online_worker.main, _base_args(settings, tmp_path))

    def label(i: int, producer: EventProducer) -> None:
        producer.send(settings.topic("labels"), chunk[i][1], key=chunk[i][0].entity_id,
                      span=False)

    for point, chunk in zip(plan, _chunks(pairs, len(plan)), strict=True):
        thread, produced = paced_producer(settings, "features", [f for f, _ in chunk],
                                          lambda e: e.entity_id, ONLINE_RATE, extra=label)
        lives.kill_once(point)
        thread.join(60)
        assert produced.is_set()
    final = lives.run_to_end(120, final=True, expected=len(pairs))

    lines = [line for life in lives.lives if life.markers.exists()
             for line in life.markers.read_text().split("\n") if line]
    summary = final.markers.read_text().strip().splitlines()[-1].split()
    learned_in_state = int(summary[1])
    learned_ids = {line for line in lines if not line.startswith("learned ")}
    produced_ids = {f.event_id for f, _ in pairs}
    missing = produced_ids - learned_ids
    relearned = len(lines) - 1 - len(learned_ids)
    elapsed = time.monotonic() - started
    detail = (f"seed {SEED + 3}; {lives.summary()}; {len(pairs)} labelled events produced, "
              f"{learned_in_state} learned into the final state, {relearned} learned again "
              f"after a kill (the at-least-once window), {len(missing)} never learned; "
              f"{elapsed:.0f} s")
    print(detail)
    ledger.fault("online service kill -9 (start-up and mid-batch)",
                 injected=len(lives.killed), survived=lives.recovered_after_each_kill(),
                 lost=len(missing) + abs(len(pairs) - learned_in_state), detail=detail)
    assert len(lives.killed) == kills.KILLS_PER_SERVICE
    assert not missing, f"events never learned, e.g. {sorted(missing)[:5]}"
    assert learned_ids == produced_ids
    assert learned_in_state == len(pairs), "the state must learn each event exactly once"
    assert lives.recovered_after_each_kill() == kills.KILLS_PER_SERVICE


# -- ingest --------------------------------------------------------------------------------

INGEST_PER_LIFE = 150
INGEST_RATE = 300.0  # feature events per second (and as many labels)
LABEL_LAG = 40  # a label is sent this many feature events after its features
INGEST_ANCHORS: tuple[kills.Anchor, ...] = (
    (kills.START, 0.2, kills.START_DELAY_S),  # start-up, group join
    ("flushing", 0.5, (0.0, 0.08)),  # inside a push: online write, parquet rewrites
    (kills.ANY_MARKER, 0.3, kills.WORK_DELAY_S),  # buffering, between push and commit
)
# a feature the model lacks, one it needs missing, a string for a number, another model
INGEST_BAD = ("unknown_feature", "missing_feature", "wrong_type", "unknown_model")


def _bad_ingest_event(n: int, template: FeatureEvent) -> tuple[FeatureEvent, str]:
    reason = INGEST_BAD[n % len(INGEST_BAD)]
    features = dict(template.features)
    model = template.model
    if reason == "unknown_feature":
        features["surprise"] = 1.0
    elif reason == "missing_feature":
        del features["amount"]
    elif reason == "wrong_type":
        features["amount"] = "12.5"
    else:
        model = "nobody"
    return FeatureEvent(event_id=f"bad-{n}", model=model, entity_id=template.entity_id,
                        event_time=template.event_time, features=features), reason


@pytest.mark.timeout(240)
def test_ingest_service_survives_kill9(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    import pyarrow.parquet as pq

    from services.features.feast_repo import apply_repo, copy_repo, load_layout, open_repo
    from services.features.generate import Generator, GeneratorConfig
    from services.features.snapshot import build_training_frame
    from streams.deadletter import REASON_HEADER

    started = time.monotonic()
    repo = copy_repo(tmp_path / "repo")
    project = f"t_{uuid.uuid4().hex[:12]}"
    store = open_repo("embedded", repo_path=repo, project=project)
    apply_repo(store)
    plan = kills.kill_plan(SEED + 4, anchors=INGEST_ANCHORS)
    pairs = list(Generator(GeneratorConfig(seed=SEED, n_cards=300, events_per_second=50.0,
                                           label_delay_s=2.0))
                 .live(T0, INGEST_PER_LIFE * len(plan)))
    features = [f for f, _ in pairs]
    labels = [y for _, y in pairs]
    lives = _lives(tmp_path, "ingest", ingest_worker.main,
                   {**_base_args(settings, tmp_path), "repo": str(repo), "project": project})
    bad_reasons: dict[str, str] = {}
    offset = 0

    def extra(i: int, producer: EventProducer) -> None:
        """After feature ``offset + i``: the label ``LABEL_LAG`` events back, a bad event
        now and then (labels of a life's last events arrive in the next life)."""
        n = offset + i
        if n >= LABEL_LAG:
            label = labels[n - LABEL_LAG]
            producer.send(settings.topic("labels"), label, key=label.event_id, span=False)
        if i % 37 == 5:
            bad, reason = _bad_ingest_event(len(bad_reasons), features[n])
            bad_reasons[bad.event_id] = reason
            producer.send(settings.topic("features"), bad, key=bad.entity_id, span=False)

    for point, chunk in zip(plan, _chunks(features, len(plan)), strict=True):
        thread, produced = paced_producer(settings, "features", chunk, lambda e: e.entity_id,
                                          INGEST_RATE, extra=extra)
        lives.kill_once(point)
        thread.join(60)
        assert produced.is_set()
        offset += len(chunk)
    with EventProducer(settings, "chaos-source") as producer:
        for label in labels[-LABEL_LAG:]:
            producer.send(settings.topic("labels"), label, key=label.event_id, span=False)
    lives.run_to_end(120, final=True)

    layout = load_layout(store, ingest_worker.MODEL)
    files = [view.path for view in (*layout.views, layout.labels)]
    rows_on_disk = {path.name: pq.read_table(path).num_rows for path in files}  # none torn
    end = max(f.event_time for f in features) + timedelta(seconds=1)
    frame, labelled = build_training_frame(store, layout, T0, end)
    got = frame.set_index("event_id")
    wrong = [f.event_id for f, y in pairs
             if f.event_id not in got.index
             or got.at[f.event_id, "is_fraud"] != y.label
             or got.at[f.event_id, "channel"] != f.features["channel"]
             or got.at[f.event_id, "amount"] != f.features["amount"]]
    newest = {f.entity_id: f.features["account_balance"] for f in features}
    cards = sorted(newest)
    online = store.get_online_features(features=["fraud_card:account_balance"],
                                       entity_rows=[{"card_id": c} for c in cards]).to_dict()
    stale = [c for c, v in zip(cards, online["account_balance"], strict=True) if v != newest[c]]
    dead: dict[str, set[str]] = {}
    for record in read_all(settings, "deadletter", FeatureEvent):
        event_id = record.event.event_id if record.event else "(undecodable)"
        dead.setdefault(event_id, set()).add(record.headers[REASON_HEADER].decode())
    misfiled = {e: r for e, r in bad_reasons.items() if dead.get(e) != {r}}
    valid_dead = sorted(set(dead) - set(bad_reasons))
    elapsed = time.monotonic() - started
    detail = (f"seed {SEED + 4}; {lives.summary()}; {len(pairs)} feature events and their "
              f"labels (each label {LABEL_LAG} events late), {len(bad_reasons)} bad events; "
              f"parquet rows on disk {rows_on_disk}; training frame {len(frame)} rows from "
              f"{labelled} labels, {len(wrong)} events missing or wrong; {len(stale)} of "
              f"{len(cards)} cards stale online; {len(valid_dead)} valid events "
              f"dead-lettered, {len(misfiled)} bad events without their reason; {elapsed:.0f} s")
    print(detail)
    ledger.fault("ingest service kill -9 (start-up, buffering, parquet rewrite, push-commit)",
                 injected=len(lives.killed), survived=lives.recovered_after_each_kill(),
                 lost=len(wrong) + len(stale) + len(valid_dead), detail=detail)
    assert len(lives.killed) == kills.KILLS_PER_SERVICE
    assert not wrong, f"events missing or wrong in the offline store, e.g. {wrong[:5]}"
    assert labelled == len(pairs) and len(frame) == len(pairs)
    assert not stale, f"cards with stale online values, e.g. {stale[:5]}"
    assert not valid_dead, f"valid events dead-lettered: {valid_dead[:5]}"
    assert not misfiled, misfiled
    assert lives.recovered_after_each_kill() == kills.KILLS_PER_SERVICE
