"""Promotion outbox: intents survive as JSON, recovery decides from the alias record, a lost
compare-and-set leaves nothing behind, rollback targets; the book's per-model policies
and its catch-up with the registry after a crash."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch

from services.registry.manifest import Lineage
from services.registry.store import AliasConflictError, ModelRegistry
from services.shadow.book import ShadowBook
from services.shadow.decision import ShadowPolicy
from services.shadow.pairing import Pair
from services.shadow.promotion import (
    Outbox,
    Promoter,
    PromotionError,
    PromotionIntent,
    configured_fault,
    event_id_for,
    recovery_outcome,
    rollback_target,
)
from services.shadow.rollback import RollbackPolicy
from streams.contracts import PairedTest, ShadowVerdict
from streams.producer import EventProducer
from streams.settings import load_settings

T0 = datetime(2026, 4, 1, tzinfo=UTC)


def _intent(new: int = 2, previous: int | None = 1, created_at: float = 0.0,
            verdict: ShadowVerdict | None = None) -> PromotionIntent:
    return PromotionIntent(intent_id=event_id_for("x", new, previous), model="m",
                           new_champion=new, previous_champion=previous, cause="shadow",
                           promoted_at=T0, verdict=verdict, traceparent=None,
                           created_at=created_at)


def _verdict() -> ShadowVerdict:
    return ShadowVerdict(
        event_id="v" * 32, model="m", candidate=2, champion=1, samples=200, metric="log_loss",
        candidate_metric=0.4, champion_metric=0.6,
        test=PairedTest(method="paired-t", statistic=3.0, p_value=0.001, mean_difference=0.2,
                        relative_improvement=0.33),
        decision="promote", reason="better", decided_at=T0,
    )


@pytest.mark.parametrize(("alias", "age", "outcome"), [
    ({"version": 2, "previous": 1}, 0.0, "published"),  # moved as intended
    ({"version": 1, "previous": None}, 1.0, "waiting"),  # not moved, writer may be moving
    ({"version": 1, "previous": None}, 500.0, "dropped"),  # not moved, writer gone
    ({"version": 3, "previous": 2}, 0.0, "superseded"),  # moved on since
    ({"version": 2, "previous": 3}, 0.0, "superseded"),  # same target from elsewhere
    (None, 500.0, "superseded"),
])
def test_recovery_outcome_follows_the_alias(alias: dict | None, age: float, outcome: str) -> None:
    assert recovery_outcome(_intent(), alias, age, grace_s=120.0) == outcome


def test_first_champion_intent_recovers_from_no_alias() -> None:
    intent = _intent(new=1, previous=None)
    assert recovery_outcome(intent, None, 1.0, 120.0) == "waiting"
    assert recovery_outcome(intent, {"version": 1, "previous": None}, 1.0, 120.0) == "published"


def test_intent_json_round_trip_keeps_the_events(tmp_path: Path) -> None:
    intent = _intent(verdict=_verdict(), created_at=12.5)
    again = PromotionIntent.from_json(intent.to_json())
    assert again == intent
    assert again.promotion.event_id == intent.intent_id
    assert again.promotion.previous_champion == 1 and again.promotion.cause == "shadow"
    outbox = Outbox(ModelRegistry(str(tmp_path)))
    outbox.put(intent)
    outbox.put(_intent(new=3, previous=2, created_at=1.0))
    assert [i.new_champion for i in outbox.pending("m")] == [3, 2]  # oldest first
    assert [i.new_champion for i in outbox.pending()] == [3, 2]
    outbox.remove(intent)
    outbox.remove(intent)  # twice is harmless
    assert [i.new_champion for i in outbox.pending("m")] == [3]


def _registry(tmp_path: Path, versions: int) -> ModelRegistry:
    registry = ModelRegistry(str(tmp_path / "registry"))
    for _ in range(versions):
        registry.register("m", state_dict={"w": torch.zeros(1)}, preprocessing={},
                          model_meta={}, lineage=Lineage(training_snapshot_id="s"),
                          hyperparameters={}, metrics={}, seeds={})
    return registry


def test_lost_compare_and_set_leaves_no_intent_and_ids_are_per_alias_state(
    tmp_path: Path,
) -> None:
    registry = _registry(tmp_path, 3)
    registry.set_alias("m", "champion", 1, expected=None)
    settings = load_settings(kafka={"bootstrap_servers": "127.0.0.1:9"})
    producer = EventProducer(settings, "unit")
    try:
        promoter = Promoter(registry, producer, settings)
        stale = promoter.intent("m", 3, expected=2, cause="shadow")
        with pytest.raises(AliasConflictError):
            promoter.move(stale)
        assert registry.get_alias("m", "champion") == 1
        assert not promoter.outbox.pending("m")
        first = promoter.intent("m", 2, expected=1, cause="shadow")
        assert promoter.intent("m", 2, expected=1, cause="shadow").intent_id == first.intent_id
        registry.set_alias("m", "champion", 2, expected=1)
        registry.set_alias("m", "champion", 1, expected=2)
        # the same move again, from a later alias record: a different event
        assert promoter.intent("m", 2, expected=1, cause="shadow").intent_id != first.intent_id
    finally:
        producer.close(timeout=1.0)


def test_rollback_target_defaults_to_previous(tmp_path: Path) -> None:
    registry = _registry(tmp_path, 3)
    with pytest.raises(PromotionError, match="no champion"):
        rollback_target(registry, "m", None)
    registry.set_alias("m", "champion", 1, expected=None)
    with pytest.raises(PromotionError, match="nothing older"):
        rollback_target(registry, "m", None)
    registry.set_alias("m", "champion", 3, expected=1)
    assert rollback_target(registry, "m", None) == (3, 1)
    assert rollback_target(registry, "m", 1) == (3, 1)
    with pytest.raises(PromotionError, match="only goes back"):  # v2 was never champion
        rollback_target(registry, "m", 2)
    with pytest.raises(PromotionError, match="already champion"):
        rollback_target(registry, "m", 3)


def test_rollbacks_walk_back_the_promotion_history_never_forward(tmp_path: Path) -> None:
    registry = _registry(tmp_path, 3)
    registry.set_alias("m", "champion", 1, expected=None)
    registry.set_alias("m", "champion", 2, expected=1)  # promotions v1 -> v2 -> v3
    registry.set_alias("m", "champion", 3, expected=2)
    visited = []
    for _ in range(2):
        current, target = rollback_target(registry, "m", None)
        registry.set_alias("m", "champion", target, expected=current, back=True)
        visited.append((current, target))
    assert visited == [(3, 2), (2, 1)]
    assert registry.get_alias("m", "champion") == 1
    with pytest.raises(PromotionError, match="nothing older"):
        rollback_target(registry, "m", None)
    # a promotion after the rollbacks starts a new history from there
    registry.set_alias("m", "champion", 3, expected=1)
    assert rollback_target(registry, "m", None) == (3, 1)


POLICY = ShadowPolicy(min_pairs=100, look_every=100, max_pairs=1000)
OTHER = ShadowPolicy(min_pairs=50, look_every=50, max_pairs=100)
ROLLBACK = RollbackPolicy(window=200, min_events=100, look_every=100)


def test_book_policies_per_model_and_kept_by_runs() -> None:
    book = ShadowBook(POLICY, ROLLBACK, {"special": OTHER})
    book.add_candidate("m", 2, 1, None, "u", "s", 1, T0)
    book.add_candidate("special", 2, 1, None, "u", "s", 1, T0)
    assert book.runs["m"][2].policy == POLICY and book.runs["special"][2].policy == OTHER
    # configuration changed between restarts: running comparisons keep their design
    again = ShadowBook.from_json(book.to_json(), POLICY, ROLLBACK, {"special": POLICY})
    assert again.runs["special"][2].policy == OTHER
    assert again.runs["special"][2].stats.looks == OTHER.looks()
    again.add_candidate("special", 3, 1, None, "u", "s", 1, T0)
    assert again.runs["special"][3].policy == POLICY


def test_sync_champion_after_a_crash_hands_over_or_rejects() -> None:
    book = ShadowBook(POLICY, ROLLBACK)
    book.add_candidate("m", 2, 1, None, "u", "s", 1, T0)
    book.add_candidate("m", 3, 1, None, "u", "s", 1, T0)
    for i in range(60):
        book.add_pair("m", Pair(f"e{i}", 1.0, 0.6 + i % 3 * 0.01, {2: 0.4 + i % 2 * 0.01,
                                                                   3: 0.6}))
    verdicts = book.sync_champion("m", 2)  # v2 was promoted just before the crash
    assert [(v.run.version, v.decision.action) for v in verdicts] == [(3, "reject")]
    assert book.champions["m"] == 2 and not book.runs["m"]
    assert book.watches["m"].previous == 1 and book.watches["m"].champion == 2
    assert book.sync_champion("m", 2) == []  # already caught up
    book.add_candidate("m", 4, 2, None, "u", "s", 2, T0 + timedelta(minutes=1))
    verdicts = book.sync_champion("m", 1)  # rolled back elsewhere
    assert [(v.run.version, v.decision.action) for v in verdicts] == [(4, "reject")]
    assert "m" not in book.watches and book.champions["m"] == 1


def test_the_fault_switch_of_the_settings_reaches_the_promotion_seam(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``faults.crash_after_alias_move`` is wired to ``after_alias_moved`` (the one
    mechanism): off, no hook; on, the hook kills the process after the alias moved."""
    import services.shadow.promotion as promotion

    assert configured_fault(load_settings()) is None
    settings = load_settings(faults={"crash_after_alias_move": True})
    hook = configured_fault(settings)
    assert hook is not None
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(promotion.os, "kill", lambda pid, sig: kills.append((pid, sig)))
    registry = _registry(tmp_path, 2)
    registry.set_alias("m", "champion", 1, expected=None)
    promoter = Promoter(registry, None, settings, after_alias_moved=hook)  # type: ignore[arg-type]
    published: list[str] = []
    monkeypatch.setattr(promoter, "publish", lambda i: published.append(i.intent_id) or [])
    intent = promoter.intent("m", 2, expected=1, cause="shadow")
    promoter.move(intent)
    assert kills == [(os.getpid(), signal.SIGKILL)]
    assert registry.get_alias("m", "champion") == 2
    assert [i.intent_id for i in promoter.outbox.pending("m")] == [intent.intent_id]
    assert published == [intent.intent_id]  # (a real kill never gets here)
