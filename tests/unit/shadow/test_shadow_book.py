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


def test_watch_confirms_or_triggers_rollback() -> None:
    for live, expected in ((0.4, "confirmed"), (0.9, "rollback")):
        book = _book()
        _add(book, 2, parent=1)
        _feed(book, 100, 0.6, {2: 0.4})
        (verdict,) = book.decide("m", T0)
        book.promoted("m", verdict.run)
        _feed(book, 200, live, {}, seed=1)  # the new champion's live losses
        status = book.rollback_status("m")
        assert status is not None and status.action == expected
        assert "m" not in book.watches


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
    _feed(book, 50, 0.4, {}, seed=2)
    again = ShadowBook.from_json(book.to_json(), POLICY, ROLLBACK)
    assert again.to_json() == book.to_json()
    assert again.watches["m"].monitor.n == 50
    restored = ShadowBook.from_json(_with_run(), POLICY, ROLLBACK)
    run = restored.runs["m"][4]
    assert run.stats.n == 150 and [s.n for s in run.stats.snapshots] == [100]


def _with_run() -> str:
    book = _book()
    _add(book, 4, parent=1)
    _feed(book, 150, 0.6, {4: 0.6})
    return book.to_json()
