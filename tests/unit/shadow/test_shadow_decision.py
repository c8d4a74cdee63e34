"""Shadow decision: paired statistics, sequential looks, promote / reject / continue."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from scipy import stats as sps

from services.shadow.decision import (
    Moments,
    PairedStats,
    ShadowPolicy,
    check_baseline,
    decide,
    paired_t,
)

SMALL = ShadowPolicy(min_pairs=100, look_every=100, max_pairs=1000, alpha=0.05,
                     regression_alpha=0.05)


def _losses(rng: np.random.Generator, n: int, improvement: float) -> tuple[np.ndarray, np.ndarray]:
    """Correlated per-event losses; candidate's mean is (1 - improvement) x champion's."""
    base = rng.exponential(0.6, n)
    champion = base + rng.normal(0, 0.15, n)
    candidate = (1 - improvement) * base + rng.normal(0, 0.15, n)
    return champion, candidate


ALPHA, T1, LOOKS = 0.01, 2000 / 50_000, 25
FIRST_LEVEL = {
    # A(t) at the first look (t = 2,000 / 50,000), from each spending function's formula
    "pocock": ALPHA * math.log(1 + (math.e - 1) * T1),
    "obrien_fleming": 2 * sps.norm.sf(sps.norm.isf(ALPHA / 2) / math.sqrt(T1)),
    "bonferroni": ALPHA / LOOKS,
}


@pytest.mark.parametrize("spending", ["pocock", "obrien_fleming", "bonferroni"])
def test_levels_spend_exactly_alpha(spending: str) -> None:
    policy = ShadowPolicy(spending=spending)
    levels = policy.levels()
    assert policy.alpha == ALPHA
    assert policy.looks()[0] == 2000 and policy.looks()[-1] == 50_000
    assert len(levels) == len(policy.looks()) == LOOKS
    assert all(lv >= 0 for lv in levels)
    assert sum(levels) == pytest.approx(policy.alpha)
    # any curve ending at alpha sums to alpha: the first look tells the curves apart
    assert levels[0] == pytest.approx(FIRST_LEVEL[spending], rel=1e-9)


def test_look_schedule_ends_at_max_pairs_when_not_aligned() -> None:
    assert ShadowPolicy(min_pairs=100, look_every=300, max_pairs=1000).looks() == (
        100, 400, 700, 1000)


def test_policy_rejects_inconsistent_bounds() -> None:
    with pytest.raises(ValueError):
        ShadowPolicy(min_pairs=5000, max_pairs=1000)


def test_welford_matches_numpy_and_bulk_matches_one_by_one() -> None:
    rng = np.random.default_rng(1)
    ch, ca = _losses(rng, 2345, 0.05)
    one, bulk = PairedStats(looks=(100, 1000, 2000)), PairedStats(looks=(100, 1000, 2000))
    for x, y in zip(ch, ca, strict=True):
        one.add(float(x), float(y))
    for lo, hi in [(0, 7), (7, 150), (150, 1999), (1999, 2345)]:
        bulk.add_many(ch[lo:hi], ca[lo:hi])
    d = ch - ca
    for s in (one, bulk):
        m = s.moments
        assert m.n == 2345
        assert m.mean_difference == pytest.approx(d.mean(), rel=1e-12)
        assert m.variance_difference == pytest.approx(d.var(ddof=1), rel=1e-9)
        assert [snap.n for snap in s.snapshots] == [100, 1000, 2000]
    for a, b in zip(one.snapshots, bulk.snapshots, strict=True):
        assert a.mean_difference == pytest.approx(b.mean_difference, rel=1e-12)
        assert a.variance_difference == pytest.approx(b.variance_difference, rel=1e-9)
    assert bulk.snapshots[1].mean_difference == pytest.approx(d[:1000].mean(), rel=1e-12)


def test_paired_t_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    ch, ca = _losses(rng, 500, 0.02)
    m = Moments.of(ch, ca)
    stat, p = paired_t(m, 0.99, 1.0)
    ref = sps.ttest_1samp(0.99 * ch - ca, 0.0, alternative="greater")
    assert stat == pytest.approx(ref.statistic, rel=1e-9)
    assert p == pytest.approx(ref.pvalue, rel=1e-6)


def test_continue_before_min_pairs() -> None:
    stats = PairedStats.for_policy(SMALL)
    ch, ca = _losses(np.random.default_rng(3), 99, 0.5)
    stats.add_many(ch, ca)
    assert decide(stats, SMALL, 0.0).action == "continue"


def test_clear_improvement_promotes_at_first_look() -> None:
    stats = PairedStats.for_policy(SMALL)
    ch, ca = _losses(np.random.default_rng(4), 150, 0.3)
    stats.add_many(ch, ca)
    d = decide(stats, SMALL, 0.0)
    assert d.action == "promote" and d.look == 1 and d.samples == 100
    assert d.test is not None and d.test.p_value <= d.level
    assert d.test.relative_improvement > 0.2


def test_decision_is_idempotent_and_uses_the_looks_not_the_calls() -> None:
    rng = np.random.default_rng(5)
    ch, ca = _losses(rng, 1000, 0.0)
    stats = PairedStats.for_policy(SMALL)
    decisions = []
    for i in range(0, 1000, 37):  # uneven batches, decide after each
        stats.add_many(ch[i : i + 37], ca[i : i + 37])
        decisions.append(decide(stats, SMALL, 0.0))
    final = decide(stats, SMALL, 0.0)
    assert final == decide(stats, SMALL, 0.0)
    decided = [d for d in decisions if d.action != "continue"]
    assert decided and all(d == decided[0] for d in decided)  # first decision sticks
    again = PairedStats.for_policy(SMALL)
    again.add_many(ch, ca)  # one batch: same looks, same decision
    other = decide(again, SMALL, 0.0)
    assert (other.action, other.reason, other.samples, other.look) == (
        final.action, final.reason, final.samples, final.look)
    assert other.test is not None and final.test is not None
    assert other.test.p_value == pytest.approx(final.test.p_value, rel=1e-9)


def test_significant_regression_rejects() -> None:
    stats = PairedStats.for_policy(SMALL)
    ch, ca = _losses(np.random.default_rng(6), 200, -0.3)
    stats.add_many(ch, ca)
    d = decide(stats, SMALL, 0.0)
    assert d.action == "reject" and "worse" in d.reason and d.look == 1


def test_slightly_worse_within_tolerance_does_not_reject_early() -> None:
    stats = PairedStats.for_policy(SMALL)
    ch, ca = _losses(np.random.default_rng(7), 999, -0.005)
    stats.add_many(ch, ca)
    assert decide(stats, SMALL, 0.0).action == "continue"


def test_max_pairs_without_improvement_rejects() -> None:
    stats = PairedStats.for_policy(SMALL)
    ch, ca = _losses(np.random.default_rng(8), 1000, 0.0)
    stats.add_many(ch, ca)
    d = decide(stats, SMALL, 0.0)
    assert d.action == "reject" and "max_pairs" in d.reason and d.samples == 1000


def test_time_limit_takes_a_final_look_then_rejects_or_promotes() -> None:
    late = timedelta(hours=7)
    stats = PairedStats.for_policy(SMALL)
    ch, ca = _losses(np.random.default_rng(9), 450, 0.0)
    stats.add_many(ch, ca)
    d = decide(stats, SMALL, late)
    assert d.action == "reject" and "time limit" in d.reason and d.samples == 450
    assert d.level == pytest.approx(SMALL.alpha - sum(SMALL.levels()[:4]))
    # a modest improvement missed at the looks can still be promoted at the final look
    stats = PairedStats.for_policy(SMALL)
    stats.add_many(*_losses(np.random.default_rng(10), 50, 0.4))
    assert decide(stats, SMALL, late).action == "reject"  # below min_pairs: nothing to test
    assert decide(stats, SMALL, 60.0).action == "continue"


def test_sequential_procedure_holds_alpha_where_naive_peeking_does_not() -> None:
    policy = SMALL.model_copy(update={"min_relative_improvement": 0.0})
    rng = np.random.default_rng(11)
    runs, promoted, naive = 300, 0, 0
    for _ in range(runs):
        ch, ca = _losses(rng, policy.max_pairs, 0.0)
        stats = PairedStats.for_policy(policy)
        peeked = False
        for i in range(0, policy.max_pairs, 50):
            stats.add_many(ch[i : i + 50], ca[i : i + 50])
            if stats.n >= policy.min_pairs and not peeked:
                peeked = paired_t(stats.moments, 1.0, 1.0)[1] <= policy.alpha
        promoted += decide(stats, policy, 0.0).action == "promote"
        naive += peeked
    assert promoted / runs <= policy.alpha + 0.02  # binomial slack for 300 runs
    assert naive / runs > 2 * policy.alpha


def test_stale_parent_is_rejected() -> None:
    assert check_baseline(3, 3) is None
    assert check_baseline(None, 3) is None
    d = check_baseline(3, 4)
    assert d is not None and d.action == "reject" and "no longer champion" in d.reason


def test_stats_for_another_policy_are_refused() -> None:
    with pytest.raises(ValueError):
        decide(PairedStats.for_policy(ShadowPolicy()), SMALL, 0.0)
