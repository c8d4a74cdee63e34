"""kill -9 of every stream service at seeded random points while the loop runs.

``make test`` runs the training worker's and the ingest service's; the drift monitor's,
the shadow service's and the online service's are soaks (``make soak``: about 3 minutes
of the suite's budget), their crash recovery covered in ``make test`` by
``test_drift_service`` (redelivered windows), ``test_shadow_service`` (a crash between
the alias move and the events) and ``test_online_restart`` (a kill mid-stream).

Each service runs as a sequence of worker processes (``chaos/workers/``, forked from a
fork server that imported them once, see :mod:`chaos.kills`) on the test's embedded
broker, with its state directory and registry shared by all its lives; twenty lives are
SIGKILLed (about a quarter during start-up and group join, most of the rest a random
moment after their first batch, about 30% between a batch's output flush and its offset
commit, see :data:`chaos.kills.COMMIT_WINDOW`), then one more runs to the end on fresh
input. Afterwards:

- drift: every event offset lies in the window of at least one ``drift.reports`` event,
  and the one drift episode yielded exactly one retrain request id;
- train: every retrain request has exactly one registered version, every version loads
  with its sha256 verified, every checkpoint left on disk loads and verifies, every
  version was announced on ``models.candidates``, at least
  :data:`MIN_MID_TRAINING_KILLS` kills landed mid-training (the life's markers show a run
  started and not finished), and each run killed after a checkpoint was resumed from it
  (the next life to train it started no earlier than that checkpoint);
- shadow: every champion the alias pointed to (as observed, and finally) has its
  ``models.promotions`` event, the promotions form one chain, the champion loads, and no
  promotion intent is left in the outbox;
- online: the events learned into the state equal the events produced, each once;
- ingest: every parquet file reads, the point-in-time training frame built from the
  offline store holds every produced event once with its values and its label (labels
  that arrived after a restart included), the online store holds each card's newest
  values, and every bad event is dead-lettered with its reason (no valid one is).

A kill counts as survived only from what the service produced after it (see
:meth:`chaos.kills.Lives.survived`): drift, the offsets of the killed life's input are in
reports and a report was produced after the kill; train, every request not yet
registered at the kill got exactly one version, registered after the kill, and was
announced; shadow, the group's committed offsets moved on after the kill and finally
cover the killed life's input; online, the killed life's events were learned and a
later life learned events; ingest, the killed life's events are in the offline store
with their values and labels, and a later life pushed rows.

The consumer groups are kept across lives (resuming from committed offsets is the point);
``session.timeout.ms`` is 1 s in the workers here, so a killed member is expelled
quickly; ``test_service_kills_session.py`` runs the same scenarios with the product's
6 s session and kills aimed at the flush-to-commit window.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chaos import kills
from chaos.ledger import FaultRecorder
from chaos.topics import committed, paced_producer, read_all
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


SHORT_SESSION_MS = 1000  # chaos.workers.common.SESSION_TIMEOUT_MS
Plan = list[kills.KillPoint]


def _lives_for(tmp_path: Path, name: str, target: Any, args: dict[str, Any],
               session_ms: int) -> kills.Lives:
    lives = _lives(tmp_path, name, target, {**args, "session_timeout_ms": session_ms})
    if session_ms > SHORT_SESSION_MS:  # a join waits for the dead member's session
        lives.marker_wait_s = 3 * session_ms / 1000 + 5
        lives.commit_wait_s = lives.marker_wait_s + 10
    return lives


def _not_survived(lives: kills.Lives, survived: list[kills.Life]) -> list[int]:
    return [life.number for life in lives.killed if life not in survived]


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


def drift_scenario(settings: Settings, tmp_path: Path, ledger: FaultRecorder,
                   plan: Plan, session_ms: int, fault: str, seed: int) -> kills.Lives:
    """Lives of the drift monitor killed at ``plan``; then every check of the docstring."""
    started = time.monotonic()
    events = _feature_events()
    lives = _lives_for(tmp_path, "drift", drift_worker.main,
                       {**_base_args(settings, tmp_path), "window": DRIFT_WINDOW}, session_ms)
    kills.kill_through(
        lives, plan, _chunks(events, len(plan) + 1),
        lambda chunk: paced_producer(settings, "features", chunk, lambda e: e.entity_id,
                                     DRIFT_RATE),
        ids=lambda e: e.event_id)
    lives.run_to_end(90, final=True)

    source = read_all(settings, "features", FeatureEvent)
    report_records = read_all(settings, "drift.reports", DriftReport)
    reports = [r.event for r in report_records]
    requests = [r.event for r in read_all(settings, "retrain.requests", RetrainRequest)]
    covered: dict[int, list[tuple[int, int]]] = {}
    for report in reports:
        for rng in report.window.offsets:
            covered.setdefault(rng.partition, []).append((rng.first_offset, rng.last_offset))

    def in_report(partition: int, offset: int) -> bool:
        return any(a <= offset <= b for a, b in covered.get(partition, []))

    uncovered = [(r.partition, r.offset) for r in source if not in_report(r.partition, r.offset)]
    where = {r.event.event_id: (r.partition, r.offset) for r in source if r.event is not None}
    report_times = [r.timestamp for r in report_records]

    def reported(life: kills.Life) -> bool:
        """Its input's offsets are in reports, and a report came out after the kill."""
        return (all(i in where and in_report(*where[i]) for i in life.given)
                and any(t > life.killed_wall for t in report_times))

    survived = lives.survived(reported)
    request_ids = {r.request_id for r in requests}
    distinct_windows = {r.event_id for r in reports}
    elapsed = time.monotonic() - started
    detail = (f"seed {seed}; session {session_ms} ms; {lives.summary()}; {len(source)} events, "
              f"{len(reports)} reports ({len(distinct_windows)} distinct windows), "
              f"{len(requests)} request events with {len(request_ids)} id(s); "
              f"{len(uncovered)} events in no report; {elapsed:.0f} s")
    print(detail)
    ledger.fault(fault, injected=len(lives.killed), survived=len(survived),
                 lost=len(uncovered), detail=detail)
    assert len(source) == len(events)
    assert len(lives.killed) == len(plan)
    assert not uncovered, f"events never reported, e.g. {uncovered[:5]}"
    assert len(request_ids) == 1, f"one drift episode, request ids {sorted(request_ids)}"
    assert not _not_survived(lives, survived), _not_survived(lives, survived)
    return lives


@pytest.mark.soak  # make soak; make test keeps the training and ingest kills
@pytest.mark.timeout(240)
def test_drift_monitor_survives_kill9(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    drift_scenario(settings, tmp_path, ledger, kills.kill_plan(SEED), SHORT_SESSION_MS,
                   "drift monitor kill -9 (start-up, mid-batch, flush-to-commit), memory broker",
                   SEED)


# -- train ---------------------------------------------------------------------------------

TRAINING = {"max_steps": 400, "eval_every_steps": 100, "batch_size": 128,
            "checkpoint": {"every_steps": 40, "keep": 3}}
"""Long enough (about a second here) that a kill 0 to 0.4 s after a run's first
checkpoint lands mid-training; with 30 steps most such kills came after the run ended."""
TRAIN_REQUESTS = 9
TRAIN_ANCHORS: tuple[kills.Anchor, ...] = (
    (kills.START, 0.2, kills.START_DELAY_S),  # start-up, group join
    ("request ", 0.25, (0.0, 1.5)),  # a request taken up: snapshot, data, first steps
    ("checkpoint", 0.35, (0.0, 0.4)),  # mid-training (resumed from the checkpoint)
    (kills.COMMIT_WINDOW, 0.2, kills.COMMIT_DELAY_S),  # candidate flushed, not committed
)
TRAIN_MARKER_WAIT_S = 30.0
"""How long a kill aimed at a marker waits for it: a life joins its group, takes a request
up and builds its snapshot (seconds) before its first checkpoint, so with the default
5 s nearly every kill aimed at a checkpoint fell before training had started."""
MIN_MID_TRAINING_KILLS = 5
"""Of the plan's 20 kills (13 aimed at a checkpoint), at least this many must land while a
run is training: started and not finished at the kill."""
HISTORY_END = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(slots=True)
class TrainingRun:
    """One training a life started, from its markers (``train <run> from <step>``,
    ``checkpoint <step>``, ``finish <status> <step>``)."""

    run_id: str
    start_step: int
    checkpoint: int | None = None
    finished: bool = False


def _training_runs(life: kills.Life) -> list[TrainingRun]:
    try:
        lines = life.markers.read_text().splitlines()
    except FileNotFoundError:
        return []
    runs: list[TrainingRun] = []
    for line in lines:
        word, *rest = line.split()
        if word == "train":
            runs.append(TrainingRun(rest[0], int(rest[2])))
        elif word == "checkpoint" and runs:
            runs[-1].checkpoint = int(rest[0])
        elif word == "finish" and runs:
            runs[-1].finished = True
    return runs


def _killed_mid_training(lives: kills.Lives) -> list[tuple[kills.Life, TrainingRun]]:
    """The killed lives whose last run was training at the kill (started, not finished)."""
    out = []
    for life in lives.killed:
        runs = _training_runs(life)
        if runs and not runs[-1].finished:
            out.append((life, runs[-1]))
    return out


def _not_resumed(lives: kills.Lives) -> list[str]:
    """Runs killed after a checkpoint that the next life to train them did not resume from
    it (``train <run> from <step>`` below the killed life's last checkpoint)."""
    wrong = []
    for life, run in _killed_mid_training(lives):
        if run.checkpoint is None:
            continue
        later = [r for other in lives.lives[life.number + 1:] for r in _training_runs(other)
                 if r.run_id == run.run_id]
        if not later or later[0].start_step < run.checkpoint:
            start = later[0].start_step if later else None
            wrong.append(f"life {life.number}: {run.run_id} killed after checkpoint "
                         f"{run.checkpoint}, next started from {start}")
    return wrong


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
            # manual: each request is its own episode (detector requests of one model
            # would join the first one, and only it would be trained)
            model=train_worker.MODEL, reason="manual", base_version=base_version,
            window_start=HISTORY_END + timedelta(seconds=2 * i),
            window_end=HISTORY_END + timedelta(seconds=41), drift_report_ids=[f"r{i}"],
            requested_at=datetime.now(UTC),
        )
        for i in range(TRAIN_REQUESTS)
    ]


def train_scenario(settings: Settings, tmp_path: Path, ledger: FaultRecorder,
                   plan: Plan, session_ms: int, fault: str, seed: int) -> kills.Lives:
    """Lives of the training worker killed at ``plan``; then every check of the docstring."""
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
    lives = _lives_for(tmp_path, "train", train_worker.main,
                       {**args, "repo": str(repo), "project": project, "training": TRAINING},
                       session_ms)
    lives.marker_wait_s = max(lives.marker_wait_s, TRAIN_MARKER_WAIT_S)
    for point in plan:
        lives.kill_once(point)
    lives.run_to_end(180, final=True, request_ids=[r.request_id for r in requests])

    registry = ModelRegistry(args["registry"])
    versions = registry.list_versions(train_worker.MODEL)
    by_request: dict[str, list[int]] = {}
    registered_at: dict[int, float] = {}
    for version in versions:
        manifest = registry.manifest(train_worker.MODEL, version)
        by_request.setdefault(str(manifest.lineage.request_id), []).append(version)
        registered_at[version] = manifest.created_at.timestamp()
        registry.load(train_worker.MODEL, version)  # sha256 of every file verified
    checkpoints = [info for run in (tmp_path / "state" / "runs").iterdir()
                   for info in list_checkpoints(run)]
    for info in checkpoints:
        load_checkpoint(info)  # sha256 in the name verified, weights_only load
    announced = {r.event.version for r in read_all(settings, "models.candidates", ModelCandidate)
                 if r.event is not None}
    missing = [r.request_id for r in requests if len(by_request.get(r.request_id, [])) != 1]
    unannounced = sorted(set(versions) - {champion} - announced)

    def registered_after(life: kills.Life) -> bool:
        """Each request without a version at the kill got exactly one, registered after
        the kill, and announced (a kill with nothing left pending owes nothing)."""
        pending = [r.request_id for r in requests
                   if not any(registered_at[v] <= life.killed_wall
                              for v in by_request.get(r.request_id, []))]
        return all(len(by_request.get(r, [])) == 1
                   and registered_at[by_request[r][0]] > life.killed_wall
                   and by_request[r][0] in announced for r in pending)

    survived = lives.survived(registered_after)
    mid_training = _killed_mid_training(lives)
    not_resumed = _not_resumed(lives)
    elapsed = time.monotonic() - started
    detail = (f"seed {seed}; session {session_ms} ms; {lives.summary()}; {len(mid_training)} "
              f"kills mid-training ({sum(1 for _, r in mid_training if r.checkpoint)} after a "
              f"checkpoint, resumed from it); {len(requests)} "
              f"requests -> versions {versions} (champion v{champion} before), "
              f"{len(checkpoints)} checkpoints verified, {len(unannounced)} versions not "
              f"announced; setup {setup_s:.0f} s, {elapsed:.0f} s")
    print(detail)
    ledger.fault(fault, injected=len(lives.killed), survived=len(survived),
                 lost=len(missing) + len(unannounced), detail=detail)
    assert len(lives.killed) == len(plan)
    assert not missing, {r: by_request.get(r) for r in missing}
    assert len(versions) == len(requests) + 1, versions
    assert not unannounced, f"versions never published on models.candidates: {unannounced}"
    assert not _not_survived(lives, survived), _not_survived(lives, survived)
    assert not not_resumed, not_resumed
    return lives


@pytest.mark.timeout(420)
def test_training_worker_survives_kill9(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    lives = train_scenario(settings, tmp_path, ledger,
                           kills.kill_plan(SEED + 1, anchors=TRAIN_ANCHORS), SHORT_SESSION_MS,
                           "training worker kill -9 (start-up, snapshot, training, "
                           "registering, flush-to-commit)", SEED + 1)
    # a kill with nothing in progress proves nothing: enough must land mid-training
    mid_training = _killed_mid_training(lives)
    assert len(mid_training) >= MIN_MID_TRAINING_KILLS, (
        f"{len(mid_training)} of {len(lives.killed)} kills landed mid-training: "
        f"{lives.summary()}")


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


SHADOW_GROUP = "driftloop-shadow"


def shadow_scenario(settings: Settings, tmp_path: Path, ledger: FaultRecorder,
                    plan: Plan, session_ms: int, fault: str, seed: int) -> kills.Lives:
    """Lives of the shadow service killed at ``plan``; then every check of the docstring."""
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
    lives = _lives_for(tmp_path, "shadow", shadow_worker.main,
                       {**args, "shadow": SHADOW_POLICY, "rollback": ROLLBACK_POLICY},
                       session_ms)
    pairs = _shadow_events(SHADOW_PAIRS_PER_LIFE * len(plan), seed)
    group = f"{settings.topics.prefix}{SHADOW_GROUP}"
    third_sent = False

    def start_chunk(chunk: list[tuple[FeatureEvent, LabelEvent]]) -> Any:
        nonlocal third_sent
        if not third_sent and registry.get_alias(shadow_worker.MODEL, "champion") == v2:
            with EventProducer(settings, "chaos-source") as producer:
                producer.send(settings.topic("models.candidates"), candidate(v3, sha3, v2),
                              "toy")
            third_sent = True

        def label(i: int, producer: EventProducer) -> None:
            producer.send(settings.topic("labels"), chunk[i][1], key="entity", span=False)

        return paced_producer(settings, "features", [f for f, _ in chunk], lambda e: "entity",
                              SHADOW_RATE, extra=label)

    chunks = _chunks(pairs, len(plan) + 1)
    kills.kill_through(lives, plan, chunks, start_chunk, ids=lambda p: p[0].event_id)
    lives.run_to_end(90, final=True)
    # read once every life has exited: an offset request for a live group disturbed it
    final = committed(settings, group, ["features", "labels"])
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
    positions: dict[str, list[tuple[str, int, int]]] = {}
    for topic in ("features", "labels"):
        for r in read_all(settings, topic, FeatureEvent if topic == "features" else LabelEvent):
            if r.event is not None:
                positions.setdefault(r.event.event_id, []).append(
                    (settings.topic(topic), r.partition, r.offset))

    def committed_on(life: kills.Life) -> bool:
        """The group's committed offsets cover the killed life's features and labels,
        and a later life handled batches (its markers, written after each batch)."""
        later = any(_has_line(x.markers, "batch ") for x in lives.lives[life.number + 1:])
        return later and all(final[(t, p)] > o for i in life.given
                             for t, p, o in positions.get(i, [("?", -1, 0)])
                             if (t, p) in final)

    survived = lives.survived(committed_on)
    elapsed = time.monotonic() - started
    moves = [(p.previous_champion, p.new_champion, p.cause) for p in chain]
    detail = (f"seed {seed}; session {session_ms} ms; {lives.summary()}; {len(pairs)} labelled "
              f"events; alias seen {observed}, promotions {moves}"
              f", verdicts {sorted((v.candidate, v.decision) for v in verdicts)}; "
              f"{len(unannounced)} alias moves without an event; {elapsed:.0f} s")
    print(detail)
    ledger.fault(fault, injected=len(lives.killed), survived=len(survived),
                 lost=len(unannounced) + len(broken), detail=detail)
    assert len(lives.killed) == len(plan)
    assert all(len(positions.get(f.event_id, [])) == 2 for f, _ in pairs), "input not all sent"
    assert chain, "no promotion happened: the test did not exercise the alias"
    assert not unannounced, f"alias moves without a promotion event: {unannounced}"
    assert not broken, f"promotion chain broken: {broken}"
    assert champion == chain[-1].new_champion
    assert {p.new_champion for p in chain if p.cause == "shadow"} <= promoted
    assert not pending, f"promotion intents left in the outbox: {pending}"
    assert not _not_survived(lives, survived), _not_survived(lives, survived)
    return lives


@pytest.mark.soak  # make soak; make test keeps the training and ingest kills
@pytest.mark.timeout(240)
def test_shadow_service_survives_kill9(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    shadow_scenario(settings, tmp_path, ledger, kills.kill_plan(SEED + 2), SHORT_SESSION_MS,
                    "shadow service kill -9 (start-up, mid-batch, flush-to-commit)", SEED + 2)


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


def online_scenario(settings: Settings, tmp_path: Path, ledger: FaultRecorder,
                    plan: Plan, session_ms: int, fault: str, seed: int) -> kills.Lives:
    """Lives of the online service killed at ``plan``; then every check of the docstring."""
    started = time.monotonic()
    pairs = _agrawal_events(ONLINE_PER_LIFE * len(plan))
    lives = _lives_for(tmp_path, "online", online_worker.main, _base_args(settings, tmp_path),
                       session_ms)

    def start_chunk(chunk: list[tuple[FeatureEvent, LabelEvent]]) -> Any:
        def label(i: int, producer: EventProducer) -> None:
            producer.send(settings.topic("labels"), chunk[i][1], key=chunk[i][0].entity_id,
                          span=False)

        return paced_producer(settings, "features", [f for f, _ in chunk],
                              lambda e: e.entity_id, ONLINE_RATE, extra=label)

    kills.kill_through(lives, plan, _chunks(pairs, len(plan) + 1), start_chunk,
                       ids=lambda p: p[0].event_id)
    final = lives.run_to_end(120, final=True, expected=len(pairs))

    learned_by_life = [
        [line for line in life.markers.read_text().split("\n")
         if line and not line.startswith(kills.COMMIT_WINDOW)]
        if life.markers.exists() else [] for life in lives.lives]
    lines = [line for learned in learned_by_life for line in learned]
    summary = final.markers.read_text().strip().splitlines()[-1].split()
    learned_in_state = int(summary[1])
    learned_ids = {line for line in lines if not line.startswith("learned ")}
    produced_ids = {f.event_id for f, _ in pairs}
    missing = produced_ids - learned_ids
    relearned = len(lines) - 1 - len(learned_ids)

    def learned_on(life: kills.Life) -> bool:
        """The killed life's events were learned, and a later life learned events."""
        later = any(learned_by_life[n] for n in range(life.number + 1, len(lives.lives)))
        return later and set(life.given) <= learned_ids

    survived = lives.survived(learned_on)
    elapsed = time.monotonic() - started
    detail = (f"seed {seed}; session {session_ms} ms; {lives.summary()}; {len(pairs)} labelled "
              f"events produced, {learned_in_state} learned into the final state, {relearned} "
              f"learned again after a kill (the at-least-once window), {len(missing)} never "
              f"learned; {elapsed:.0f} s")
    print(detail)
    ledger.fault(fault, injected=len(lives.killed), survived=len(survived),
                 lost=len(missing) + abs(len(pairs) - learned_in_state), detail=detail)
    assert len(lives.killed) == len(plan)
    assert not missing, f"events never learned, e.g. {sorted(missing)[:5]}"
    assert learned_ids == produced_ids
    assert learned_in_state == len(pairs), "the state must learn each event exactly once"
    assert not _not_survived(lives, survived), _not_survived(lives, survived)
    return lives


@pytest.mark.soak  # make soak; make test keeps the training and ingest kills
@pytest.mark.timeout(240)
def test_online_service_survives_kill9(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    online_scenario(settings, tmp_path, ledger, kills.kill_plan(SEED + 3), SHORT_SESSION_MS,
                    "online service kill -9 (start-up, mid-batch, flush-to-commit)", SEED + 3)


# -- ingest --------------------------------------------------------------------------------

INGEST_PER_LIFE = 150
INGEST_RATE = 300.0  # feature events per second (and as many labels)
LABEL_LAG = 40  # a label is sent this many feature events after its features
INGEST_ANCHORS: tuple[kills.Anchor, ...] = (
    (kills.START, 0.2, kills.START_DELAY_S),  # start-up, group join
    ("flushing", 0.4, (0.0, 0.08)),  # inside a push: online write, parquet rewrites
    (kills.ANY_MARKER, 0.2, kills.WORK_DELAY_S),  # buffering
    (kills.COMMIT_WINDOW, 0.2, kills.COMMIT_DELAY_S),  # pushed, offsets not committed
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


def ingest_scenario(settings: Settings, tmp_path: Path, ledger: FaultRecorder,
                    plan: Plan, session_ms: int, fault: str, seed: int) -> kills.Lives:
    """Lives of the ingest service killed at ``plan``; then every check of the docstring."""
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
    pairs = list(Generator(GeneratorConfig(seed=SEED, n_cards=300, events_per_second=50.0,
                                           label_delay_s=2.0))
                 .live(T0, INGEST_PER_LIFE * len(plan)))
    features = [f for f, _ in pairs]
    labels = [y for _, y in pairs]
    lives = _lives_for(tmp_path, "ingest", ingest_worker.main,
                       {**_base_args(settings, tmp_path), "repo": str(repo), "project": project},
                       session_ms)
    bad_reasons: dict[str, str] = {}
    offset = 0

    def start_chunk(chunk: list[FeatureEvent]) -> Any:
        nonlocal offset
        first = offset
        offset += len(chunk)

        def extra(i: int, producer: EventProducer) -> None:
            """After feature ``first + i``: the label ``LABEL_LAG`` events back, a bad
            event now and then (labels of a life's last events arrive in the next life)."""
            n = first + i
            if n >= LABEL_LAG:
                label = labels[n - LABEL_LAG]
                producer.send(settings.topic("labels"), label, key=label.event_id, span=False)
            if i % 37 == 5:
                bad, reason = _bad_ingest_event(len(bad_reasons), features[n])
                bad_reasons[bad.event_id] = reason
                producer.send(settings.topic("features"), bad, key=bad.entity_id, span=False)

        return paced_producer(settings, "features", chunk, lambda e: e.entity_id,
                              INGEST_RATE, extra=extra)

    kills.kill_through(lives, plan, _chunks(features, len(plan) + 1), start_chunk,
                       ids=lambda e: e.event_id)
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
    wrong_ids = set(wrong)

    def pushed_after(life: kills.Life) -> bool:
        """The killed life's events are in the offline store with their values and labels,
        and a later life pushed rows (its ``flushed <rows>`` marker)."""
        later = any(_has_line(x.markers, "flushed ") for x in lives.lives[life.number + 1:])
        return later and not (set(life.given) & wrong_ids)

    survived = lives.survived(pushed_after)
    elapsed = time.monotonic() - started
    detail = (f"seed {seed}; session {session_ms} ms; {lives.summary()}; {len(pairs)} feature "
              f"events and their labels (each label {LABEL_LAG} events late), "
              f"{len(bad_reasons)} bad events; parquet rows on disk {rows_on_disk}; training "
              f"frame {len(frame)} rows from {labelled} labels, {len(wrong)} events missing or "
              f"wrong; {len(stale)} of {len(cards)} cards stale online; {len(valid_dead)} valid "
              f"events dead-lettered, {len(misfiled)} bad events without their reason; "
              f"{elapsed:.0f} s")
    print(detail)
    ledger.fault(fault, injected=len(lives.killed), survived=len(survived),
                 lost=len(wrong) + len(stale) + len(valid_dead), detail=detail)
    assert len(lives.killed) == len(plan)
    assert not wrong, f"events missing or wrong in the offline store, e.g. {wrong[:5]}"
    assert labelled == len(pairs) and len(frame) == len(pairs)
    assert not stale, f"cards with stale online values, e.g. {stale[:5]}"
    assert not valid_dead, f"valid events dead-lettered: {valid_dead[:5]}"
    assert not misfiled, misfiled
    assert not _not_survived(lives, survived), _not_survived(lives, survived)
    return lives


def _has_line(path: Path, prefix: str) -> bool:
    return path.exists() and any(line.startswith(prefix) for line in path.read_text().split("\n"))


@pytest.mark.timeout(240)
def test_ingest_service_survives_kill9(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    ingest_scenario(settings, tmp_path, ledger, kills.kill_plan(SEED + 4, anchors=INGEST_ANCHORS),
                    SHORT_SESSION_MS, "ingest service kill -9 (start-up, buffering, parquet "
                    "rewrite, push-commit)", SEED + 4)
