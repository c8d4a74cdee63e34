"""``driftloop run online``: learn per labelled event; a concept drift becomes a retrain request.

One consumer reads ``features`` and ``labels`` (joined by ``event_id`` in a bounded
:class:`~services.online.join.LabelJoin`), plus ``models.candidates`` and
``models.verdicts`` (to know when a request it made has been answered). Joined events
are learned in mini-batches per model by :class:`~services.online.learner.OnlineLearner`;
each drift signal on its error stream either joins the model's open episode or goes
through the shared :class:`~services.drift.trigger.RetrainTrigger` (one alarm is enough
by default, with the trigger's cooldown and in-flight rules) and may produce a
``RetrainRequest`` with reason ``concept``. Events of models it does not learn are
ignored; a label of a learned model that does not fit its task
(:meth:`~services.model.task.Task.label_problem`: not 0 or 1 for binary, not a declared
class for multiclass) is dead-lettered as ``invalid_value``
with a detail naming the field and the value (``label: a binary label is 0 or 1, got
0.5``), and the loop goes on.

Durability: the learners, the pending join, the trigger states and the recent event
times form one
:class:`~services.online.state.OnlineState`, snapshotted (atomic, verified, see
:mod:`services.online.state`) every ``snapshot_every`` learned events or
``snapshot_interval_s`` seconds, together with the next offset of every partition
consumed. Offsets are committed only right after a snapshot, so a crash replays from
the last snapshot and nothing learned is lost or learned twice beyond that replay.
The learner state is not shardable by partition (one model learns from all events):
run one member per consumer group.

Messages at offsets the restored state already covers (a crash between a snapshot and
its commit, a rebalance) are skipped and counted as ``redelivered``, so each labelled
event is learned into the state exactly once; what a killed process learned after its
last snapshot is lost with it and learned again (the at-least-once window).

While the champion watch is live for a model (it scored the current champion past its
warm-up), an alarm on the learner's own error opens no episode (it joins an open one):
the champion watch speaks for the champion (``learner_alarms_held`` counts them).

Episodes (one retrain per change): a :class:`~services.episodes.reader.ControlReader`
reads ``retrain.requests``, ``retrain.episodes`` and ``models.verdicts`` in full (no
group: this service is one member of its own group, and every request of every model
matters), drained at the start of each batch into an
:class:`~services.episodes.book.EpisodeBook`. A drift signal while the book has an open
episode for the model (opened by either detector, not stale) sends no request: it
produces an ``EpisodeEvent`` ``joined`` (detector ``online``, the detection as
evidence) on ``retrain.episodes``, and the trigger is left untouched (a rejected
candidate does not end the episode, so a later alarm joins it too). Otherwise a fired
trigger sends attempt 1 of a new episode (``episode_id`` = its ``request_id``) and an
``opened`` event. Both steps count in ``driftloop.retrain.episodes``.

Where the change began: the signal says how many learned events back
(:mod:`services.online.cutpoint`); the model's
:class:`~services.online.timeline.EventTimeline` (in the snapshot) maps that count to
the event time of that event (its features' time, else its label's: later). The
request's ``change_point`` and ``window_start`` are that time, ``window_end`` the
detecting label's event time.

The champion watch (``online.champion_watch``, on by default): each learned mini-batch is
also scored by the registry's champion (alias read at most every
:data:`CHAMPION_RESOLVE_S`, each version loaded and verified once) and its error feeds a
:class:`~services.online.champion_watch.ChampionWatch`, which follows a new champion with
a fresh detector. Its detections take the same path as the learner's (join the open
episode, else a ``concept`` request through the trigger), with the champion named in the
evidence; its change point is the watch's own split, kept as event times. No champion,
one that cannot be loaded or scored, or one of another task: nothing is watched, and
the problem is logged once. A detection while this service's own request is in flight
but not yet read back into the book joins that request's episode.

Retrain request ids are ``concept-<model>-<learner uid>-<events learned>`` (the watch's:
``concept-<model>-champion-<watch uid>-v<version>-<events watched>``): replaying the
same events after a restart from a snapshot yields the same id, and the trainer's
idempotency turns a repeat into a no-op. A request stays in flight until its verdict:
the ``models.verdicts`` event names the request it answers and clears it; for a ``shadow``
``models.promotions`` event, which names none, the ``models.candidates`` event seen for
that version maps it to its request id. ``base_version`` is the registry's ``champion``
when there is one.

Each model's learner follows its task (``settings.model(m).task``: estimator, drift
input, rolling metrics, see :mod:`services.online.learner`). A snapshot's learner of
another task than the configured one (the model's task was changed) is not restored: the
model starts from a fresh learner.

Predictions over HTTP: ``POST /predict`` on the health port (``http.port``)
scores ``{"model", "features"}`` with the LIVE learner in memory (what it has learned up to
now, not the last snapshot), and with the registry's champion when ``"champion": true``
(loaded and verified once per champion version), each in its task's form (see
:mod:`services.online.predict`). River models are not thread-safe, so
learning (per mini-batch piece) and predicting take one lock; see
:meth:`OnlineService.predict_http`.

Model specs come from the Feast repo by default; a model's options may carry an
inline ``online.spec`` instead, and :func:`build` takes a ``spec_provider`` (tests,
models outside the Feast repo).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from services.drift.trigger import RetrainTrigger, TriggerConfig
from services.episodes.reader import ControlReader
from services.featurespec import FeatureSpec, ModelSpec
from services.model.task import Task
from services.model_settings import InlineSpec
from services.observability.health import PostHandler
from services.online.champion_watch import ChampionSignal, ChampionWatch
from services.online.join import Joined, LabelJoin
from services.online.learner import DriftSignal, LearnerConfig, OnlineLearner, Outcome
from services.online.predict import Answer, answer_doc, online_answer, predict_champion
from services.online.state import OnlineState, SnapshotError, SnapshotStore, snapshot_dir
from services.online.telemetry import OnlineMetrics
from services.runtime import StreamService
from streams.consumer import CommitPlan, Inbound, PartitionKey
from streams.contracts import (
    EpisodeEvent,
    FeatureEvent,
    LabelEvent,
    ModelCandidate,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
    Watched,
    new_event_id,
)
from streams.settings import Settings

log = logging.getLogger(__name__)
CONTROL_TOPICS = ("retrain.requests", "retrain.episodes", "models.verdicts")
"""What the episode book of this service folds (see :class:`ControlReader`)."""

CONCEPT_TRIGGER = TriggerConfig(consecutive=1, cooldown=timedelta(minutes=15))
CHAMPION_RESOLVE_S = 2.0  # how often the champion alias is read for the watch
SpecProvider = Callable[[str], ModelSpec]
LearnedHook = Callable[[str, Sequence[Joined], Sequence[Outcome]], None]
"""``hook(model, joined, outcomes)`` after each learned mini-batch (tests, benchmarks)."""
PREDICT_PATH = "/predict"


def spec_from_options(model: str, spec: InlineSpec) -> ModelSpec:
    """A :class:`ModelSpec` from a model's inline ``online.spec`` (models outside Feast)."""
    return ModelSpec(
        model=model,
        entity=spec.entity,
        features=tuple(FeatureSpec(f.name, f.kind, f.critical)  # type: ignore[arg-type]
                       for f in spec.features),
        label=spec.label,
    )


class ChampionCache:
    """``ModelRegistry.load`` for :func:`predict_champion`, loading each version once.

    The alias is resolved on every call, so a promotion or a rollback is answered by the
    new champion at once; the verified load (every file's sha256) happens only when the
    version it points at changes. Safe to call from several HTTP threads.
    """

    def __init__(self, registry: Callable[[], Any]) -> None:
        self._registry = registry  # called per use: the service opens its registry lazily
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str], Any] = {}
        self.loads = 0  # verified loads done (tests, metrics)

    def load(self, model: str, ref: str) -> Any:
        """The :class:`~services.registry.store.LoadedModel` that ``ref`` points at now."""
        registry = self._registry()
        version = registry.resolve(model, ref)  # raises when there is no such alias
        with self._lock:
            cached = self._loaded.get((model, ref))
            if cached is None or cached.version != version:
                cached = registry.load(model, version)
                self._loaded[(model, ref)] = cached
                self.loads += 1
            return cached


class OnlineService(StreamService):
    """Kafka loop around the online learners."""

    name = "online"

    def __init__(
        self,
        settings: Settings,
        *,
        specs: Mapping[str, ModelSpec],
        configs: Mapping[str, LearnerConfig] | None = None,
        tasks: Mapping[str, Task] | None = None,
        trigger: TriggerConfig = CONCEPT_TRIGGER,
        snapshot_every: int = 20_000,
        snapshot_interval_s: float = 30.0,
        store: SnapshotStore | None = None,
        join: LabelJoin | None = None,
        registry: Any = None,
        on_learned: LearnedHook | None = None,
        control: ControlReader | None = None,
        **kwargs: Any,
    ) -> None:
        self.specs = dict(specs)
        self.control = control or ControlReader(settings, topics=CONTROL_TOPICS, name="online")
        self.on_learned = on_learned
        # River models are not thread-safe: the consumer thread learns while HTTP threads
        # predict, so both hold this lock (learning per mini-batch piece, to stay short).
        self._learner_lock = threading.Lock()
        self.champions = ChampionCache(lambda: self.registry)
        self._registry = registry  # services.registry.store.ModelRegistry, built lazily
        self.configs = dict(configs or {})
        self.tasks = {m: (tasks or {}).get(m) or Task() for m in self.specs}
        self.trigger_config = trigger
        self.snapshot_every = snapshot_every
        self.snapshot_interval_s = snapshot_interval_s
        self.store = store or SnapshotStore(
            snapshot_dir(settings), key_file=settings.online.snapshot_key_file
        )
        self.state, self.positions = self._restore(join)
        self.triggers = {
            m: RetrainTrigger.from_state_json(self.state.triggers[m], trigger)
            if m in self.state.triggers
            else RetrainTrigger(trigger)
            for m in self.specs
        }
        self.requests_sent: deque[RetrainRequest] = deque(maxlen=1000)  # the latest, bounded
        # learner alarms not sent while the champion watch was live (evidence only)
        self.learner_alarms_held: dict[str, int] = {}
        self.detections: deque[tuple[str, DriftSignal | ChampionSignal]] = deque(maxlen=1000)
        self._watched: dict[str, tuple[float, Any]] = {}  # model -> (resolved at, Scorer)
        self._watch_problem: dict[str, str] = {}  # model -> the last problem logged
        self.episode_events: deque[EpisodeEvent] = deque(maxlen=1000)  # sent, the latest
        self.redelivered = 0
        self.restored_learned = self.state.learned
        self._since_snapshot = 0
        self._dirty = False
        self._in_batch = False
        self._last_snapshot = time.monotonic()
        super().__init__(
            settings,
            group_id="driftloop-online",
            topics={
                settings.topic("features"): FeatureEvent,
                settings.topic("labels"): LabelEvent,
                settings.topic("models.candidates"): ModelCandidate,
                settings.topic("models.verdicts"): ShadowVerdict,
                settings.topic("models.promotions"): ModelPromotion,
            },
            **kwargs,
        )
        self.online_metrics = OnlineMetrics(self.telemetry.meter)
        self._publish_metrics()

    # -- state ---------------------------------------------------------------------------
    def _restore(self, join: LabelJoin | None) -> tuple[OnlineState, dict[PartitionKey, int]]:
        try:
            found = self.store.load_latest()
        except SnapshotError as exc:
            log.error("online: no usable snapshot, starting fresh: %s", exc)
            found = None
        if found is not None:
            state, offsets, refused = found
            for reason in refused:
                log.error("online: snapshot refused: %s", reason)
            if isinstance(state, OnlineState):
                for m in self.specs:
                    old = state.learners.get(m)
                    if old is not None and old.task != self.tasks[m]:
                        log.error("online: %s: the snapshot's learner is %s, the model is %s "
                                  "now; starting a fresh learner", m, old.task.kind,
                                  self.tasks[m].kind)
                        old = None
                    if old is None:  # a model added (or changed) since the snapshot
                        state.learners[m] = self._new_learner(m)
                for m, learner in state.learners.items():
                    if learner.recover():
                        log.error("online: %s: the snapshot's model state is not finite; "
                                  "restarted from a fresh model", m)
                return state, dict(offsets)
        learners = {m: self._new_learner(m) for m in self.specs}
        return OnlineState(learners=learners, join=join or LabelJoin()), {}

    def _new_learner(self, model: str) -> OnlineLearner:
        return OnlineLearner(self.specs[model], self.configs.get(model), self.tasks[model])

    def snapshot(self) -> CommitPlan:
        """Write the state with the offsets it covers; returns them as the commit plan."""
        self.state.triggers = {m: t.state_json() for m, t in self.triggers.items()}
        self.store.save(self.state, self.positions)
        self.online_metrics.snapshot()
        self._since_snapshot = 0
        self._dirty = False
        self._last_snapshot = time.monotonic()
        return dict(self.positions)

    # -- the loop ------------------------------------------------------------------------
    def handle_batch(self, batch: list[Inbound[Any]]) -> CommitPlan | None:
        """Join, learn per model, turn drift signals into requests; commit at snapshots."""
        self._in_batch = True  # stays set if this batch fails half done
        self._drain_control()
        now = time.monotonic()
        ready: dict[str, list[tuple[Joined, Inbound[Any]]]] = {}
        for inbound in batch:
            key = (inbound.topic, inbound.partition)
            if inbound.offset < self.positions.get(key, 0):
                # already in the state (redelivered after a crash or a rebalance)
                self.redelivered += 1
                self.online_metrics.redelivered(inbound.topic)
                continue
            self.positions[key] = inbound.offset + 1
            event = inbound.event
            joined = None
            if isinstance(event, FeatureEvent):
                if event.model in self.specs:
                    joined = self.state.join.add_features(
                        event.event_id, event.model, dict(event.features), now,
                        event.event_time,
                    )
            elif isinstance(event, LabelEvent):
                if event.model in self.specs:
                    problem = self.tasks[event.model].label_problem(event.label)
                    if problem is not None:
                        self.loop.dead_letter(inbound.message, "invalid_value",
                                              f"label: {problem}")
                        continue
                    joined = self.state.join.add_label(
                        event.event_id, event.model, event.label, event.event_time, now
                    )
            elif isinstance(event, ModelCandidate):
                if event.request_id and event.model in self.specs:
                    self.state.requests.setdefault(event.model, {})[event.version] = (
                        event.request_id
                    )
            elif isinstance(event, ShadowVerdict):
                self._answered(event.model, event.candidate, event.request_id)
            elif isinstance(event, ModelPromotion) and event.cause == "shadow":
                self._answered(event.model, event.new_champion)
            if joined is not None:
                ready.setdefault(joined.model, []).append((joined, inbound))
        for model, items in ready.items():
            self._learn(model, items)
        if ready:
            self._publish_metrics()
        self.state.join.expire(now)
        due = self._since_snapshot >= self.snapshot_every or (
            (self._since_snapshot or self._dirty)
            and now - self._last_snapshot >= self.snapshot_interval_s
        )
        plan = self.snapshot() if due else {}
        self._in_batch = False
        return plan

    def _drain_control(self) -> None:
        """Fold what arrived on the control topics into the episode book."""
        try:
            self.control.drain()
        except Exception as exc:  # the book stays as it was; the next batch tries again
            log.error("online: control topics unreadable: %s", exc)

    def _answered(self, model: str, version: int, request_id: str | None = None) -> None:
        """A verdict (or promotion) for ``version`` arrived: its request is no longer in flight.

        The request is the one the verdict names, else the one the candidate event named.
        """
        known = self.state.requests.get(model, {}).pop(version, None)
        request = request_id or known
        trigger = self.triggers.get(model)
        if trigger is None or trigger.in_flight is None or request is None:
            return
        if trigger.clear_in_flight(request):
            self._dirty = True  # snapshotted at the next interval, learned events or not
            log.info("online: %s request %s answered (v%d)", model, request, version)

    @property
    def registry(self) -> Any:
        """The model registry (``settings.registry_uri``), opened on first use."""
        if self._registry is None:
            from services.registry.store import ModelRegistry

            self._registry = ModelRegistry(self.settings.registry_uri)
        return self._registry

    def champion_version(self, model: str) -> int | None:
        """The registry's ``champion`` of ``model``, or None (none yet, or unreadable)."""
        try:
            return self.registry.get_alias(model, "champion")  # type: ignore[no-any-return]
        except Exception as exc:  # the request still goes out, unbased
            log.warning("online: champion of %s unreadable: %s", model, exc)
            return None

    def _publish_metrics(self) -> None:
        self.online_metrics.publish(
            {m: learner.metrics() for m, learner in self.state.learners.items()}
        )

    def _learn(self, model: str, items: list[tuple[Joined, Inbound[Any]]]) -> None:
        learner = self.state.learners[model]
        fits = [it for it in items if learner.task.label_problem(it[0].label) is None]
        if len(fits) < len(items):  # labels joined before the model's task was changed
            log.warning("online: %s: %d joined label(s) of its former task dropped", model,
                        len(items) - len(fits))
            items = fits
            if not items:
                return
        rows = [j.features for j, _ in items]
        labels = [j.label for j, _ in items]
        ids = [j.event_id for j, _ in items]
        # The pieces learn_many would cut anyway (same outcomes), each under the lock, so
        # a prediction waits for one piece at most, not for a whole consumer batch.
        step = learner.config.max_batch
        refused = learner.refused_values + learner.refused_updates
        outcomes: list[Outcome] = []
        for i in range(0, len(rows), step):
            with self._learner_lock:
                outcomes += learner.learn_many(
                    rows[i:i + step], labels[i:i + step], ids[i:i + step]
                )
        self._since_snapshot += len(items)
        self.online_metrics.learned(model, len(items))
        refused = learner.refused_values + learner.refused_updates - refused
        if refused:
            self.online_metrics.refused(model, refused)
            log.warning("online: %s refused %d non-finite input(s)/update(s) (restored: %d "
                        "so far)", model, refused, learner.refused_updates)
        learner.drain_signals()  # taken from the outcomes below, in order
        timeline = self.state.timeline(model)
        first = learner.learned - len(outcomes) + 1
        for n, ((joined, inbound), outcome) in enumerate(zip(items, outcomes, strict=True)):
            timeline.record(first + n, joined.event_time)
            if outcome.drift is not None:
                self.detections.append((model, outcome.drift))
                self.online_metrics.detection(model)
                self._on_drift(model, learner, outcome.drift, joined, inbound)
        if learner.config.champion_watch:
            self._watch_champion(model, items)
        if self.on_learned is not None:
            self.on_learned(model, [j for j, _ in items], outcomes)

    def _on_drift(
        self, model: str, learner: OnlineLearner, signal: DriftSignal, joined: Joined,
        inbound: Inbound[Any],
    ) -> None:
        request_id = f"concept-{model}-{learner.uid[:12]}-{signal.learned}"
        change_point = self.change_point(model, signal, joined)
        log.info("online: %s concept drift at %d learned (change from %s)", model,
                 signal.learned, change_point.isoformat())
        self._concept_alarm(model, request_id, change_point,
                            self._evidence(signal, change_point), joined, inbound, "learner")

    def _watch_champion(self, model: str, items: list[tuple[Joined, Inbound[Any]]]) -> None:
        """Score the learned events with the champion and feed its error to the watch."""
        scorer = self._champion_scorer(model)
        if scorer is None:
            return
        watch = self.state.watches.get(model)
        if watch is None:
            watch = self.state.watches[model] = ChampionWatch(
                self.state.learners[model].config, self.tasks[model])
        if watch.follow(scorer.version):
            log.info("online: %s: watching champion v%d's error", model, scorer.version)
        joined = [j for j, _ in items]
        try:
            predictions = scorer.predict([j.features for j in joined])
        except Exception as exc:  # a champion that cannot score these rows: not an alarm
            self._watch_trouble(model, f"champion v{scorer.version} could not score: {exc}")
            return
        signals = watch.observe([j.label for j in joined], predictions,
                                [j.event_time for j in joined], [j.event_id for j in joined])
        by_id = {j.event_id: n for n, j in enumerate(joined)}
        for signal in signals:
            n = by_id.get(signal.event_id or "", len(items) - 1)
            self.detections.append((model, signal))
            self.online_metrics.detection(model)
            change_point = min(signal.change_time, joined[n].label_time)
            log.info("online: %s champion v%d's error rose at %d watched (change from %s)",
                     model, signal.version, signal.watched, change_point.isoformat())
            self._concept_alarm(
                model, f"concept-{model}-champion-{watch.uid}-v{signal.version}-"
                       f"{signal.watched}", change_point,
                self._champion_evidence(signal, change_point), joined[n], items[n][1],
                "champion")

    def _champion_scorer(self, model: str) -> Any:
        """The champion's :class:`~services.model.scoring.Scorer` (the alias read at most
        every :data:`CHAMPION_RESOLVE_S`), or None: no champion, or it cannot be loaded."""
        now = time.monotonic()
        resolved_at, scorer = self._watched.get(model, (-1e18, None))
        if now - resolved_at < CHAMPION_RESOLVE_S:
            return scorer
        try:
            version = self.registry.get_alias(model, "champion")
            if version is None:
                scorer = None
            elif scorer is None or scorer.version != version:
                from services.model.scoring import Scorer  # torch: only once there is one

                scorer = Scorer.from_loaded(self.champions.load(model, "champion"))
                if scorer.task != self.tasks[model]:
                    self._watch_trouble(model, f"champion v{scorer.version} is a "
                                               f"{scorer.task.kind} model, the learner "
                                               f"{self.tasks[model].kind}; not watched")
                    scorer = None
        except Exception as exc:  # unreadable now: tried again at the next resolve
            self._watch_trouble(model, f"champion unreadable: {exc}")
            scorer = None
        self._watched[model] = (now, scorer)
        return scorer

    def _watch_trouble(self, model: str, problem: str) -> None:
        """Log a champion-watch problem once per distinct problem (not every batch)."""
        if self._watch_problem.get(model) != problem:
            self._watch_problem[model] = problem
            log.warning("online: %s: %s", model, problem)

    def _concept_alarm(self, model: str, request_id: str, change_point: datetime,
                       evidence: str, joined: Joined, inbound: Inbound[Any],
                       watched: Watched) -> None:
        """A concept detection: it joins the model's open episode, or through the trigger
        it opens one with a ``concept`` request."""
        at = joined.label_time
        episode = self.control.book.open_episode(model, now=datetime.now(UTC))
        # The book learns of this service's own request only when it is read back: until
        # then the request in flight is the open episode (its id is the episode's).
        open_id = episode.episode_id if episode is not None else None
        in_flight = self.triggers[model].in_flight
        if open_id is None and in_flight is not None and (
                self.control.book.of_request(in_flight) is None):
            open_id = in_flight
        if open_id is not None:
            self._join(model, open_id, request_id, evidence, change_point, inbound, watched)
            return
        if watched == "learner" and self._champion_watched(model):
            # the learner's error moves as it learns; whether the champion needs a
            # retrain is the champion watch's call (measured: a learner's alarm three
            # hours after a promotion, where nothing changed, opened a second episode)
            self.learner_alarms_held[model] = self.learner_alarms_held.get(model, 0) + 1
            log.info("online: %s learner's alarm %s is evidence only: the champion watch "
                     "scores v%s on the same events and decides", model, request_id,
                     self.state.watches[model].version)
            return
        decision = self.triggers[model].observe(True, at, window_id=request_id)
        log.info("online: %s concept alarm %s: %s", model, request_id, decision.reason)
        if not decision.fire:
            return
        requested_at = datetime.now(UTC)
        request = RetrainRequest(
            event_id=new_event_id(),
            request_id=request_id,
            model=model,
            reason="concept",
            base_version=self.champion_version(model),
            window_start=change_point,
            window_end=at,
            drift_report_ids=[],
            requested_at=requested_at,
            change_point=change_point,
            episode_id=request_id,
            attempt=1,
            watched=watched,
        )
        context = inbound.trace_context()
        self.producer.send(self.settings.topic("retrain.requests"), request, model,
                           context=context)
        self.metrics.record_retrain_request(model, "concept")
        self.requests_sent.append(request)
        self._send_episode(EpisodeEvent(
            event_id=f"{request_id}-opened", episode_id=request_id, model=model,
            status="opened", request_id=request_id, detector="online", reason="concept",
            change_point=change_point, evidence=[evidence], at=requested_at,
            watched=watched), inbound)

    def _champion_watched(self, model: str) -> bool:
        """Whether the champion watch is live for ``model``: it has scored events of the
        current champion past its warm-up, so its own detector speaks for the champion."""
        watch = self.state.watches.get(model)
        learner = self.state.learners.get(model)
        return (watch is not None and learner is not None and learner.config.champion_watch
                and watch.version is not None and watch.watched > watch.settings.warmup)

    def change_point(self, model: str, signal: DriftSignal, joined: Joined) -> datetime:
        """The event time where ``signal``'s change began: the time of its first
        post-change event (rounded later, see :class:`EventTimeline`), never after the
        detecting label's time; the detecting event's own time when nothing older is
        kept."""
        found = self.state.timeline(model).time_of(signal.change_learned)
        return min(found or joined.event_time, joined.label_time)

    def _join(self, model: str, episode_id: str, request_id: str, evidence: str,
              change_point: datetime, inbound: Inbound[Any], watched: Watched) -> None:
        """The model's episode is open: the detection joins it as evidence, no request."""
        log.info("online: %s concept alarm %s joins open episode %s", model, request_id,
                 episode_id)
        self._send_episode(EpisodeEvent(
            event_id=f"{request_id}-joined", episode_id=episode_id, model=model,
            status="joined", detector="online", reason="concept", change_point=change_point,
            evidence=[evidence], at=datetime.now(UTC), watched=watched), inbound)

    def _send_episode(self, event: EpisodeEvent, inbound: Inbound[Any]) -> None:
        self.producer.send(self.settings.topic("retrain.episodes"), event, event.model,
                           context=inbound.trace_context())
        self.metrics.record_episode(event.model, event.status)
        self.episode_events.append(event)

    @staticmethod
    def _evidence(signal: DriftSignal, change_point: datetime) -> str:
        """One line describing a detection (an episode event's evidence)."""
        return (f"online {signal.detector}: drift at {signal.learned} learned events, "
                f"error {signal.error_before:.3f} -> {signal.error_after:.3f}, change began "
                f"{signal.post_change} event(s) back ({signal.cut}) at "
                f"{change_point.isoformat()}")

    @staticmethod
    def _champion_evidence(signal: ChampionSignal, change_point: datetime) -> str:
        """One line describing a champion-watch detection (an episode event's evidence)."""
        return (f"champion v{signal.version} {signal.detector}: its error rose at "
                f"{signal.watched} watched events, {signal.error_before:.3f} -> "
                f"{signal.error_after:.3f}, change began {signal.post_change} event(s) back "
                f"({signal.cut}) at {change_point.isoformat()}")

    def on_revoke(self, partitions: list[PartitionKey]) -> CommitPlan | None:
        """Snapshot before the partitions go, so their offsets can be committed."""
        if self._in_batch:  # a batch failed half done: its state must not be saved
            return None
        return self.snapshot() if self._since_snapshot or self._dirty else None

    def health_status(self) -> str | tuple[str, dict[str, Any]]:
        with self._learner_lock:  # read from an HTTP thread while the loop learns
            detail: dict[str, Any] = {
                m: learner.metrics() for m, learner in self.state.learners.items()
            }
            unhealthy = sorted(m for m, lr in self.state.learners.items() if not lr.healthy)
        detail["pending_features"] = len(self.state.join)
        detail["redelivered"] = self.redelivered
        if unhealthy:  # non-finite state not restored (yet): predictions are not numbers
            detail["unhealthy_models"] = unhealthy
            return "degraded", detail
        return "ok", detail

    # -- HTTP ----------------------------------------------------------------------------
    def http_routes(self) -> dict[str, PostHandler]:
        """``POST /predict`` on the health port (see :meth:`predict_http`)."""
        return {PREDICT_PATH: self.predict_http}

    def predict_http(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer ``{"model", "features", "champion"?}`` with the live learner (and champion).

        200: ``{"model", "online": {<prediction>, "learned"}, "champion": {...}}``, each
        side's prediction in its task's form (binary ``proba``, multiclass
        ``probabilities`` and ``label``, regression ``value``; see
        :mod:`services.online.predict`); the champion only when asked; each side reports
        its own ``error``. 400 for a malformed request or an unknown model; 503 while the
        learner has learned nothing (its answer would be the untrained one, not a
        prediction).
        """
        try:
            request = json.loads(body)
        except ValueError:  # UnicodeDecodeError is one too
            return 400, {"error": "body is not JSON"}
        if not isinstance(request, dict):
            return 400, {"error": "body must be a JSON object"}
        model = request.get("model")
        if not isinstance(model, str) or not model:
            return 400, {"error": "'model' must be a non-empty string"}
        features = request.get("features")
        if not isinstance(features, dict):
            return 400, {"error": "'features' must be a JSON object of name: value"}
        bad = [k for k, v in features.items()
               if v is not None and not isinstance(v, int | float | str)]
        if bad:
            return 400, {"error": "feature values must be numbers, strings or null: "
                                  + ", ".join(sorted(bad))}
        champion = request.get("champion", False)
        if not isinstance(champion, bool):
            return 400, {"error": "'champion' must be true or false"}
        learner = self.state.learners.get(model)
        if learner is None:
            known = sorted(self.state.learners)
            return 400, {"error": f"unknown model {model!r}; known: {', '.join(known) or 'none'}",
                         "known": known}
        with self._learner_lock:
            learned = learner.learned
            if not learned:
                return 503, {"error": f"model {model!r} has learned nothing yet",
                             "model": model, "learned": 0}
            try:
                online = online_answer(learner, features, learned=learned)
            except (ValueError, TypeError) as exc:
                online = Answer("online", learned=learned, error=str(exc))
        out: dict[str, Any] = {"model": model, "online": answer_doc(online, strict_json=True)}
        if champion:
            out["champion"] = answer_doc(self._champion_answer(model, features),
                                         strict_json=True)
        return 200, out

    def _champion_answer(self, model: str, features: Mapping[str, Any]) -> Answer:
        """The champion's answer; an unexpected failure is logged, not shown to the client."""
        try:
            return predict_champion(self.settings, model, features, registry=self.champions)
        except Exception:
            log.exception("online: champion of %s could not score", model)
            return Answer("champion", error="champion could not score (see the service log)")

    def run(self, **kwargs: Any) -> Any:
        """Consume until stopped; the gauges stop reporting when the loop ends."""
        try:
            return super().run(**kwargs)
        finally:
            self.online_metrics.close()
            self.control.close()


def feast_spec_provider(settings: Settings) -> SpecProvider:
    """Specs from the model's Feast FeatureService (the store is opened on first use)."""
    store: list[Any] = []

    def provide(model: str) -> ModelSpec:
        from services.features.feast_repo import load_model_spec, open_store

        if not store:
            store.append(open_store(settings))
        return load_model_spec(store[0], model)

    return provide


def build(
    settings: Settings, spec_provider: SpecProvider | None = None, **kwargs: Any
) -> OnlineService:
    """Factory for ``driftloop run online``: one learner per configured model.

    Models: those in ``settings.models`` or, when none is configured, every
    FeatureService of the Feast repo. Per model, ``settings.model(m).task`` is what its
    learner learns and ``settings.model(m).online`` holds the :class:`LearnerConfig`
    fields, optionally an inline ``spec`` (see :func:`spec_from_options`);
    ``online: false`` skips the model. A spec comes from
    that inline ``spec``, else from ``spec_provider``, else from the Feast repo.
    ``kwargs`` go to :class:`OnlineService` (snapshot cadence, telemetry, batch size).
    """
    provider = spec_provider or feast_spec_provider(settings)
    names = list(settings.models)
    if not names:
        from services.features.feast_repo import open_store

        names = [s.name for s in open_store(settings).list_feature_services()]
    specs, configs, tasks = {}, {}, {}
    for name in names:
        model = settings.model(name)
        if not model.online.enabled:
            continue
        online = model.online
        specs[name] = spec_from_options(name, online.spec) if online.spec else provider(name)
        configs[name] = LearnerConfig(**online.learner_fields())
        tasks[name] = model.task
    return OnlineService(settings, specs=specs, configs=configs, tasks=tasks, **kwargs)
