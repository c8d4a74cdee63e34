"""The shadow evaluator's bookkeeping, without I/O: who is champion, which candidates run,
their paired statistics, and the rollback watch after a promotion.

The service feeds it candidates, paired losses and champion changes, and acts on what it
returns (verdicts to publish, an alias to move). Everything here is plain data with a
JSON form (:meth:`ShadowBook.to_json`), written by the service before it commits
offsets, so a restart carries on with the same runs and statistics. Predictions still
waiting for their labels are not part of it (they live in the pairing buffer): after a
crash those events are simply not paired, for champion and candidate alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.shadow.decision import (
    Decision,
    Moments,
    PairedStats,
    ShadowPolicy,
    check_baseline,
    decide,
)
from services.shadow.pairing import Pair
from services.shadow.rollback import LossSummary, RollbackMonitor, RollbackPolicy, RollbackStatus


@dataclass
class ShadowRun:
    """One candidate in shadow against the champion it was built from."""

    model: str
    version: int
    parent: int | None
    champion: int | None  # the champion it is compared with
    request_id: str | None
    registry_uri: str
    sha256: str
    started_at: datetime
    stats: PairedStats
    traceparent: str | None = None  # the candidate event's trace, for the verdict
    # the policy it started with: a sequential design is fixed before the data, so a
    # changed configuration applies to new runs only
    policy: ShadowPolicy = field(default_factory=ShadowPolicy)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "version": self.version, "parent": self.parent,
            "champion": self.champion, "request_id": self.request_id,
            "registry_uri": self.registry_uri, "sha256": self.sha256,
            "started_at": self.started_at.isoformat(), "traceparent": self.traceparent,
            "moments": _moments(self.stats.moments),
            "snapshots": [_moments(s) for s in self.stats.snapshots],
            "policy": self.policy.model_dump(mode="json"),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShadowRun:
        """A saved run, with the policy it started with."""
        policy = ShadowPolicy.model_validate(d["policy"])
        stats = PairedStats.restore(
            policy.looks(), Moments(**d["moments"]), [Moments(**s) for s in d["snapshots"]]
        )
        return cls(
            model=d["model"], version=d["version"], parent=d["parent"], champion=d["champion"],
            request_id=d["request_id"], registry_uri=d["registry_uri"], sha256=d["sha256"],
            started_at=datetime.fromisoformat(d["started_at"]), stats=stats,
            traceparent=d["traceparent"], policy=policy,
        )


def _moments(m: Moments) -> dict[str, float]:
    return {
        "n": m.n, "mean_champion": m.mean_champion, "mean_candidate": m.mean_candidate,
        "m2_champion": m.m2_champion, "m2_candidate": m.m2_candidate, "comoment": m.comoment,
    }


@dataclass
class RollbackWatch:
    """A promoted champion under watch, and the version to return to."""

    model: str
    champion: int
    previous: int | None
    monitor: RollbackMonitor

    def to_dict(self) -> dict[str, Any]:
        s = self.monitor.shadow
        return {
            "model": self.model, "champion": self.champion, "previous": self.previous,
            "shadow": [s.n, s.mean, s.variance],
            "live": list(self.monitor.state()),
            "snapshots": [[x.n, x.mean, x.variance] for x in self.monitor.snapshots],
            "policy": self.monitor.policy.model_dump(mode="json"),
            "pairs": None if self.monitor.pairs is None else {
                "moments": _moments(self.monitor.pairs.moments),
                "snapshots": [_moments(s) for s in self.monitor.pairs.snapshots]},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RollbackWatch:
        """A saved watch, with the policy it started with (``pairs``: None when unpaired)."""
        policy = RollbackPolicy.model_validate(d["policy"])
        pairs = d["pairs"]
        monitor = RollbackMonitor.restore(
            policy, LossSummary(*d["shadow"]), tuple(d["live"]),
            [LossSummary(*x) for x in d["snapshots"]],
            None if pairs is None else (Moments(**pairs["moments"]),
                                        [Moments(**x) for x in pairs["snapshots"]]),
        )
        return cls(d["model"], d["champion"], d["previous"], monitor)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decided candidate: the run and why."""

    run: ShadowRun
    decision: Decision


@dataclass
class ShadowBook:
    """Champions, running candidates and rollback watches of every model.

    ``policy`` and ``rollback`` apply to every model without an entry in ``policies`` /
    ``rollbacks`` (per-model configuration). A run keeps the policy it started with.
    """

    policy: ShadowPolicy = field(default_factory=ShadowPolicy)
    rollback: RollbackPolicy = field(default_factory=RollbackPolicy)
    policies: dict[str, ShadowPolicy] = field(default_factory=dict)
    rollbacks: dict[str, RollbackPolicy] = field(default_factory=dict)
    champions: dict[str, int | None] = field(default_factory=dict)
    runs: dict[str, dict[int, ShadowRun]] = field(default_factory=dict)
    watches: dict[str, RollbackWatch] = field(default_factory=dict)
    decided: dict[str, list[int]] = field(default_factory=dict)  # recent, for duplicates

    def shadow_policy(self, model: str) -> ShadowPolicy:
        """The decision policy new runs of ``model`` get."""
        return self.policies.get(model, self.policy)

    def rollback_policy(self, model: str) -> RollbackPolicy:
        """The rollback watch policy of ``model``."""
        return self.rollbacks.get(model, self.rollback)

    def active(self, model: str) -> bool:
        """Whether events of ``model`` need scoring (a candidate or a watch is running)."""
        return bool(self.runs.get(model)) or model in self.watches

    def add_candidate(
        self, model: str, version: int, parent: int | None, request_id: str | None,
        registry_uri: str, sha256: str, champion: int | None, now: datetime,
        traceparent: str | None = None,
    ) -> Verdict | None:
        """Start a run; returns an immediate rejection when its parent is not champion.

        A candidate already running or already decided (a redelivered event) is ignored.
        """
        if version in self.runs.get(model, {}) or version in self.decided.get(model, []):
            return None
        if champion is not None and version == champion:
            return None
        self.champions[model] = champion
        policy = self.shadow_policy(model)
        run = ShadowRun(model, version, parent, champion, request_id, registry_uri, sha256, now,
                        PairedStats.for_policy(policy), traceparent, policy)
        stale = check_baseline(parent, champion)
        if stale is not None:
            self._forget(run)
            return Verdict(run, stale)
        self.runs.setdefault(model, {})[version] = run
        return None

    def add_pair(self, model: str, pair: Pair) -> None:
        """One labelled event's losses: into each running candidate's stats and the watch."""
        for version, loss in pair.candidate_losses.items():
            run = self.runs.get(model, {}).get(version)
            if run is not None:
                run.stats.add(pair.champion_loss, loss)
        watch = self.watches.get(model)
        if watch is not None:
            previous = (None if watch.previous is None
                        else pair.candidate_losses.get(watch.previous))
            watch.monitor.add(pair.champion_loss, previous)

    def decide(self, model: str, now: datetime) -> list[Verdict]:
        """Runs of ``model`` that reached a decision now (removed from the book).

        A promotion is returned first and alone: the service moves the alias, then calls
        :meth:`promoted`, which rejects the other runs (their baseline changed).
        """
        out = []
        for run in list(self.runs.get(model, {}).values()):
            d = decide(run.stats, run.policy, now - run.started_at)
            if d.action == "promote":
                self._forget(run)
                return [Verdict(run, d)]
            if d.action == "reject":
                self._forget(run)
                out.append(Verdict(run, d))
        return out

    def promoted(self, model: str, run: ShadowRun) -> list[Verdict]:
        """``run`` became champion: watch it, reject the other runs (stale baseline).

        The watch is paired with the previous champion (the service scores it on the
        watched events, :meth:`scored_beside`). No watch when the shadow estimate cannot
        carry one (fewer than 2 pairs, or a mean loss of 0: a regression model exact on
        every shadow event has no relative margin).
        """
        m = run.stats.moments
        previous = self.champions.get(model)
        self.watches.pop(model, None)
        if m.n >= 2 and m.mean_candidate > 0:
            shadow = LossSummary(m.n, m.mean_candidate, m.m2_candidate / max(m.n - 1, 1))
            monitor = RollbackMonitor(self.rollback_policy(model), shadow,
                                      paired=previous is not None)
            self.watches[model] = RollbackWatch(model, run.version, previous, monitor)
        return self.set_champion(model, run.version, keep_watch=True)

    def sync_champion(self, model: str, version: int | None) -> list[Verdict]:
        """The registry says ``version`` is champion: catch the book up (after a restart).

        A running candidate that is champion now was promoted by this service just before
        a crash (its events were completed from the outbox): it is taken out of shadow and
        watched, as :meth:`promoted` does (if its shadow estimate allows a watch).
        """
        if self.champions.get(model) == version:
            return []
        run = self.runs.get(model, {}).get(version) if version is not None else None
        if run is not None:
            self._forget(run)
            return self.promoted(model, run)
        return self.set_champion(model, version)

    def set_champion(
        self, model: str, version: int | None, keep_watch: bool = False
    ) -> list[Verdict]:
        """The champion is now ``version``: runs built on another parent are rejected."""
        if not keep_watch and self.watches.get(model) and self.watches[model].champion != version:
            del self.watches[model]
        self.champions[model] = version
        out = []
        for run in list(self.runs.get(model, {}).values()):
            stale = check_baseline(run.parent if run.parent is not None else run.champion,
                                   version)
            if stale is not None:
                self._forget(run)
                out.append(Verdict(run, stale))
        return out

    def scored_beside(self, model: str) -> int | None:
        """The version to score beside the champion for its watch: the previous champion
        of a paired watch (None without one)."""
        watch = self.watches.get(model)
        if watch is None or not watch.monitor.paired:
            return None
        return watch.previous

    def end_watch(self, model: str) -> None:
        """Stop watching ``model``'s champion (its previous one cannot be scored)."""
        self.watches.pop(model, None)

    def rollback_status(self, model: str) -> RollbackStatus | None:
        """The watch's status (``confirmed`` ends the watch)."""
        watch = self.watches.get(model)
        if watch is None:
            return None
        status = watch.monitor.status()
        if status.action != "watch":
            del self.watches[model]
        return status

    def _forget(self, run: ShadowRun) -> None:
        self.runs.get(run.model, {}).pop(run.version, None)
        done = self.decided.setdefault(run.model, [])
        done.append(run.version)
        del done[:-100]

    # -- persistence ---------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({
            "champions": self.champions,
            "runs": [r.to_dict() for runs in self.runs.values() for r in runs.values()],
            "watches": [w.to_dict() for w in self.watches.values()],
            "decided": self.decided,
        }, sort_keys=True)

    @classmethod
    def from_json(
        cls, text: str, policy: ShadowPolicy, rollback: RollbackPolicy,
        policies: dict[str, ShadowPolicy] | None = None,
        rollbacks: dict[str, RollbackPolicy] | None = None,
    ) -> ShadowBook:
        d = json.loads(text)
        book = cls(policy, rollback, dict(policies or {}), dict(rollbacks or {}),
                   champions=dict(d["champions"]), decided=dict(d["decided"]))
        for r in d["runs"]:
            run = ShadowRun.from_dict(r)
            book.runs.setdefault(run.model, {})[run.version] = run
        for w in d["watches"]:
            watch = RollbackWatch.from_dict(w)
            book.watches[watch.model] = watch
        return book
