"""Shadow book: runs, stale baselines, promotion hand-over, rollback watch, JSON state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from services.shadow.book import ShadowBook
from services.shadow.decision import ShadowPolicy
from services.shadow.pairing import Pair
from services.shadow.rollback import RollbackPolicy

T0 = datetime(2026, 4, 1, tzinfo=UTC)
POLICY = ShadowPolicy(min_pairs=100, look_every=100, max_pairs=1000)
ROLLBACK = RollbackPolicy(window=200, min_events=100, look_every=100)


def _book() -> ShadowBook:
    return ShadowBook(POLICY, ROLLBACK)


def _add(book: ShadowBook, version: int, parent: int | None, champion: int = 1):
    return book.add_candidate("m", version, parent, f"r{version}", f"uri/{version}", "0" * 64,
                              champion, T0)


def _feed(book: ShadowBook, n: int, champion_loss: float, losses: dict[int, float],
          seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        noise = float(rng.normal(0, 0.05))
        book.add_pair("m", Pair(f"e{seed}-{i}", 1.0, champion_loss + noise,
                                {v: loss + noise + float(rng.normal(0, 0.02))
                                 for v, loss in losses.items()}))


def test_stale_parent_rejected_at_once_and_duplicates_ignored() -> None:
    book = _book()
    verdict = _add(book, 3, parent=2)
    assert verdict is not None and verdict.decision.action == "reject"
    assert _add(book, 3, parent=1) is None and 3 not in book.runs.get("m", {})  # decided
    assert _add(book, 2, parent=1) is None and book.active("m")
    assert _add(book, 2, parent=1) is None and len(book.runs["m"]) == 1


def test_promotion_rejects_the_other_runs_and_starts_a_watch() -> None:
    book = _book()
    _add(book, 2, parent=1)
    _add(book, 3, parent=1)
    _feed(book, 100, 0.6, {2: 0.4, 3: 0.59})
    verdicts = book.decide("m", T0 + timedelta(minutes=5))
    assert [(v.run.version, v.decision.action) for v in verdicts] == [(2, "promote")]
    others = book.promoted("m", verdicts[0].run)
    assert [(v.run.version, v.decision.action) for v in others] == [(3, "reject")]
    assert book.champions["m"] == 2 and book.watches["m"].previous == 1
    assert book.watches["m"].monitor.shadow.mean < 0.45


def _promoted_book() -> ShadowBook:
    """v2 promoted over v1 on 100 shadow pairs (0.4 against 0.6)."""
    book = _book()
    _add(book, 2, parent=1)
    _feed(book, 100, 0.6, {2: 0.4})
    (verdict,) = book.decide("m", T0)
    book.promoted("m", verdict.run)
    return book


def test_watch_compares_the_new_champion_with_the_previous_one_on_the_same_events() -> None:
    # (new champion's live loss, previous champion's on the same events, outcome)
    cases = ((0.4, 0.6, "confirmed"), (0.9, 0.6, "rollback"),
             # both far above the shadow estimate 0.4 (traffic got harder), the new one
             # still the better: rolling back would restore the worse model
             (0.9, 1.2, "confirmed"))
    for live, previous, expected in cases:
        book = _promoted_book()
        assert book.scored_beside("m") == 1  # the service scores v1 beside v2
        _feed(book, 200, live, {1: previous}, seed=1)
        status = book.rollback_status("m")
        assert status is not None and status.action == expected, (live, previous, status)
        assert "m" not in book.watches


def test_a_paired_watch_counts_only_events_the_previous_champion_scored() -> None:
    book = _promoted_book()
    _feed(book, 150, 0.9, {}, seed=1)  # no loss of v1: not comparable, not counted
    assert book.watches["m"].monitor.n == 0
    _feed(book, 200, 0.9, {1: 0.6}, seed=2)
    status = book.rollback_status("m")
    assert status is not None and status.action == "rollback" and status.live is not None
    assert status.live.n == 100  # the first look, on paired events only


def test_first_champion_is_watched_against_its_shadow_estimate() -> None:
    book = ShadowBook(POLICY, ROLLBACK)
    book.add_candidate("m", 1, None, "r1", "uri/1", "0" * 64, None, T0)
    book.runs["m"][1].stats.add_many(np.full(100, 0.6), np.full(100, 0.4) +
                                     np.random.default_rng(0).normal(0, 0.05, 100))
    book.promoted("m", book.runs["m"].pop(1))
    assert book.scored_beside("m") is None and not book.watches["m"].monitor.paired
    _feed(book, 200, 0.9, {}, seed=1)
    status = book.rollback_status("m")
    assert status is not None and status.action == "rollback"
    assert "shadow estimate" in status.reason


def test_external_champion_change_rejects_runs_on_the_old_parent() -> None:
    book = _book()
    _add(book, 2, parent=1)
    verdicts = book.set_champion("m", 5)
    assert [(v.run.version, v.decision.action) for v in verdicts] == [(2, "reject")]
    assert not book.active("m")


def test_json_round_trip_keeps_runs_statistics_and_watches() -> None:
    book = _book()
    _add(book, 2, parent=1)
    _add(book, 3, parent=1)
    _feed(book, 150, 0.6, {2: 0.4, 3: 0.6})
    (verdict,) = book.decide("m", T0)
    book.promoted("m", verdict.run)
    _feed(book, 50, 0.4, {1: 0.6}, seed=2)
    again = ShadowBook.from_json(book.to_json(), POLICY, ROLLBACK)
    assert again.to_json() == book.to_json()
    monitor = again.watches["m"].monitor
    assert monitor.n == 50 and monitor.pairs is not None and monitor.pairs.n == 50
    # the restored pairs go on: 50 + 150 reach the last look (200); lost pairs would not
    _feed(again, 150, 0.9, {1: 0.6}, seed=3)
    status = again.rollback_status("m")
    assert status is not None and status.action == "rollback" and status.live is not None
    assert status.live.n == 200
    restored = ShadowBook.from_json(_with_run(), POLICY, ROLLBACK)
    run = restored.runs["m"][4]
    assert run.stats.n == 150 and [s.n for s in run.stats.snapshots] == [100]


def _with_run() -> str:
    book = _book()
    _add(book, 4, parent=1)
    _feed(book, 150, 0.6, {4: 0.6})
    return book.to_json()
