"""``driftloop run online``: learn per labelled event; a concept drift becomes a retrain request.

One consumer reads ``features`` and ``labels`` (joined by ``event_id`` in a bounded
:class:`~services.online.join.LabelJoin`), plus ``models.candidates`` and
``models.verdicts`` (to know when a request it made has been answered). Joined events
are learned in mini-batches per model by :class:`~services.online.learner.OnlineLearner`;
each drift signal on its error stream goes through the shared
:class:`~services.drift.trigger.RetrainTrigger` (one alarm is enough by default, with the
trigger's cooldown and in-flight rules) and may produce a ``RetrainRequest`` with
reason ``concept``.

Durability: the learners, the pending join and the trigger states form one
:class:`~services.online.state.OnlineState`, snapshotted (atomic, verified, see
:mod:`services.online.state`) every ``snapshot_every`` learned events or
``snapshot_interval_s`` seconds, together with the next offset of every partition
consumed. Offsets are committed only right after a snapshot, so a crash replays from
the last snapshot and nothing learned is lost or learned twice beyond that replay.
The learner state is not shardable by partition (one model learns from all events):
run one member per consumer group.

Retrain request ids are ``concept-<model>-<learner uid>-<events learned>``: replaying the
same events after a restart from a snapshot yields the same id, and the trainer's
idempotency turns a repeat into a no-op.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from services.drift.trigger import RetrainTrigger, TriggerConfig
from services.featurespec import ModelSpec
from services.online.join import Joined, LabelJoin
from services.online.learner import DriftSignal, LearnerConfig, OnlineLearner
from services.online.state import OnlineState, SnapshotError, SnapshotStore
from services.runtime import StreamService
from streams.consumer import CommitPlan, Inbound, PartitionKey
from streams.contracts import (
    FeatureEvent,
    LabelEvent,
    ModelCandidate,
    RetrainRequest,
    ShadowVerdict,
    new_event_id,
)
from streams.settings import Settings

log = logging.getLogger(__name__)

ENV_KEY_FILE = "DRIFTLOOP_ONLINE_SNAPSHOT_KEY"
CONCEPT_TRIGGER = TriggerConfig(consecutive=1, cooldown=timedelta(minutes=15))


def snapshot_dir(settings: Settings) -> Path:
    """Where snapshots live: under the registry root when it is local, else the state dir.

    Snapshots are unpickled, so they must stay on the local disk this service writes
    (see the trust boundary in :mod:`services.online.state`).
    """
    parsed = urlparse(settings.registry_uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else settings.registry_uri) / "online"
    return settings.state_dir / "online"


class OnlineService(StreamService):
    """Kafka loop around the online learners."""

    name = "online"

    def __init__(
        self,
        settings: Settings,
        *,
        specs: Mapping[str, ModelSpec],
        configs: Mapping[str, LearnerConfig] | None = None,
        trigger: TriggerConfig = CONCEPT_TRIGGER,
        snapshot_every: int = 20_000,
        snapshot_interval_s: float = 30.0,
        store: SnapshotStore | None = None,
        join: LabelJoin | None = None,
        **kwargs: Any,
    ) -> None:
        self.specs = dict(specs)
        self.configs = dict(configs or {})
        self.trigger_config = trigger
        self.snapshot_every = snapshot_every
        self.snapshot_interval_s = snapshot_interval_s
        key = os.environ.get(ENV_KEY_FILE)
        self.store = store or SnapshotStore(
            snapshot_dir(settings), key_file=Path(key) if key else None
        )
        self.state, self.positions = self._restore(join)
        self.triggers = {
            m: RetrainTrigger.from_state_json(self.state.triggers[m], trigger)
            if m in self.state.triggers
            else RetrainTrigger(trigger)
            for m in self.specs
        }
        self.requests_sent: list[RetrainRequest] = []
        self._since_snapshot = 0
        self._last_snapshot = time.monotonic()
        self._window_start: dict[str, datetime] = {}
        super().__init__(
            settings,
            group_id=f"{settings.topics.prefix}driftloop-online",
            topics={
                settings.topic("features"): FeatureEvent,
                settings.topic("labels"): LabelEvent,
                settings.topic("models.candidates"): ModelCandidate,
                settings.topic("models.verdicts"): ShadowVerdict,
            },
            **kwargs,
        )

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
                for m, spec in self.specs.items():  # models added since the snapshot
                    state.learners.setdefault(m, OnlineLearner(spec, self.configs.get(m)))
                return state, dict(offsets)
        learners = {m: OnlineLearner(s, self.configs.get(m)) for m, s in self.specs.items()}
        return OnlineState(learners=learners, join=join or LabelJoin()), {}

    def snapshot(self) -> CommitPlan:
        """Write the state with the offsets it covers; returns them as the commit plan."""
        self.state.triggers = {m: t.state_json() for m, t in self.triggers.items()}
        self.store.save(self.state, self.positions)
        self._since_snapshot = 0
        self._last_snapshot = time.monotonic()
        return dict(self.positions)

    # -- the loop ------------------------------------------------------------------------
    def handle_batch(self, batch: list[Inbound[Any]]) -> CommitPlan | None:
        """Join, learn per model, turn drift signals into requests; commit at snapshots."""
        now = time.monotonic()
        ready: dict[str, list[tuple[Joined, Inbound[Any]]]] = {}
        for inbound in batch:
            key = (inbound.topic, inbound.partition)
            self.positions[key] = max(self.positions.get(key, 0), inbound.offset + 1)
            event = inbound.event
            joined = None
            if isinstance(event, FeatureEvent):
                if event.model in self.specs:
                    joined = self.state.join.add_features(
                        event.event_id, event.model, dict(event.features), now
                    )
            elif isinstance(event, LabelEvent):
                if event.model in self.specs:
                    if event.label not in (0.0, 1.0):
                        self.loop.dead_letter(inbound.message, "invalid_label",
                                              f"binary label expected, got {event.label}")
                        continue
                    joined = self.state.join.add_label(
                        event.event_id, event.model, event.label, event.event_time, now
                    )
            elif isinstance(event, ModelCandidate):
                if event.request_id:
                    self.state.requests.setdefault(event.model, {})[event.version] = (
                        event.request_id
                    )
            elif isinstance(event, ShadowVerdict):
                request = self.state.requests.get(event.model, {}).pop(event.candidate, None)
                if request and event.model in self.triggers:
                    self.triggers[event.model].clear_in_flight(request)
            if joined is not None:
                ready.setdefault(joined.model, []).append((joined, inbound))
        for model, items in ready.items():
            self._learn(model, items)
        self.state.join.expire(now)
        due = self._since_snapshot >= self.snapshot_every or (
            self._since_snapshot and now - self._last_snapshot >= self.snapshot_interval_s
        )
        return self.snapshot() if due else {}

    def _learn(self, model: str, items: list[tuple[Joined, Inbound[Any]]]) -> None:
        learner = self.state.learners[model]
        self._window_start.setdefault(model, items[0][0].label_time)
        outcomes = learner.learn_many(
            [j.features for j, _ in items], [j.label for j, _ in items],
            [j.event_id for j, _ in items],
        )
        self._since_snapshot += len(items)
        learner.drain_signals()  # taken from the outcomes below, in order
        for (joined, inbound), outcome in zip(items, outcomes, strict=True):
            if outcome.drift is not None:
                self._on_drift(model, learner, outcome.drift, joined, inbound)

    def _on_drift(
        self, model: str, learner: OnlineLearner, signal: DriftSignal, joined: Joined,
        inbound: Inbound[Any],
    ) -> None:
        at = joined.label_time
        request_id = f"concept-{model}-{learner.uid[:12]}-{signal.learned}"
        decision = self.triggers[model].observe(True, at, window_id=request_id)
        log.info("online: %s concept drift at %d learned: %s", model, signal.learned,
                 decision.reason)
        if not decision.fire:
            return
        start = self._window_start.get(model, at)
        request = RetrainRequest(
            event_id=new_event_id(),
            request_id=request_id,
            model=model,
            reason="concept",
            base_version=None,
            window_start=min(start, at),
            window_end=at,
            drift_report_ids=[],
            requested_at=datetime.now(UTC),
        )
        self.producer.send(self.settings.topic("retrain.requests"), request, model,
                           context=inbound.trace_context())
        self.metrics.record_retrain_request(model, "concept")
        self.requests_sent.append(request)
        self._window_start[model] = at

    def on_revoke(self, partitions: list[PartitionKey]) -> CommitPlan | None:
        """Snapshot before the partitions go, so their offsets can be committed."""
        return self.snapshot() if self._since_snapshot else None

    def health_status(self) -> str | tuple[str, dict[str, Any]]:
        detail: dict[str, Any] = {
            m: learner.metrics() for m, learner in self.state.learners.items()
        }
        detail["pending_features"] = len(self.state.join)
        return "ok", detail


def build(settings: Settings) -> OnlineService:
    """Factory for ``driftloop run online``: specs from the Feast repo, configs from settings.

    ``settings.models[<model>]["online"]`` may hold a :class:`LearnerConfig` mapping;
    models with ``online: false`` are skipped.
    """
    from services.features.feast_repo import load_model_spec, open_store

    store = open_store(repo_path=settings.feature_repo)
    names = list(settings.models) or [s.name for s in store.list_feature_services()]
    specs, configs = {}, {}
    for name in names:
        online = settings.models.get(name, {}).get("online", {})
        if online is False:
            continue
        specs[name] = load_model_spec(store, name)
        configs[name] = LearnerConfig(**(online or {}))
    return OnlineService(settings, specs=specs, configs=configs)
