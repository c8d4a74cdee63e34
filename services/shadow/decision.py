"""When to promote or reject a shadow candidate: paired losses, tested at pre-set looks.

Statistics. Each labelled event gives one pair (champion loss, candidate loss) on the
same input. :class:`PairedStats` keeps their running moments with Welford's algorithm
(counts, means, variances and the co-moment, so the mean and variance of
``d = loss_champion - loss_candidate`` and of any margin-shifted difference follow).

The test. Promotion needs the candidate to be better by at least the minimum relative
improvement ``m``: one-sided paired t-test of ``H0: E[L_cand] >= (1 - m) E[L_champ]`` on
``e = (1 - m) L_champ - L_cand`` (with n >= 2000 pairs the t and z tests agree). The margin
sits inside the per-event difference, so the test is exact about the relative margin
and needs no plug-in estimate of the champion's mean loss.

Any task. The losses are the model's task's per-event loss (``Task.event_loss``: log loss,
cross-entropy or squared error; the verdict names it). Every margin here is *relative*
to the champion's mean loss (``min_relative_improvement``, ``regression_tolerance``),
never in loss units, so one policy means the same for every task and every label scale:
multiplying all losses by ``c`` (a regression target in grams instead of kilograms,
``c = 10**6``) multiplies ``e`` by ``c`` and leaves the t statistic, and so the decision,
unchanged. What differs between tasks is what a relative step buys: a 1% lower squared
error is a 0.5% lower RMSE, and squared errors are heavier-tailed than log losses, so a
regression comparison may need more pairs for the same power. Margins are set per model
(``models.<m>.shadow``).

Peeking. Pairs arrive continuously; testing after every batch at level alpha would, over
tens of looks, promote a candidate that is no better far more often than alpha. Choice
made here: a *group-sequential design with alpha spending over pre-set looks*.

* Looks are fixed before any data: at ``min_pairs``, then every ``look_every`` pairs, and
  at ``max_pairs``. :class:`PairedStats` records the moments *exactly at those counts*
  as pairs are added, so :func:`decide` tests the data of the planned looks whatever the
  batch sizes or how often it is called (it is idempotent; calling it more often cannot
  inflate anything).
* A spending function ``A(t)`` (``t = n / max_pairs``, ``A(1) = alpha``) gives look ``j``
  the nominal level ``A(t_j) - A(t_{j-1})``. The levels sum to at most ``alpha``, so by
  the union bound the false-promotion rate under continuous monitoring is at most
  ``alpha``, with no numerical integration of the joint law of the looks (that would
  buy a little power back; the union bound is simpler to verify and is what
  ``benchmarks/bench_shadow.py`` checks).
* Default spending is Pocock-type, ``A(t) = alpha * ln(1 + (e - 1) t)``: it spends
  evenly enough that a clearly better candidate is promoted at the first looks.
  O'Brien-Fleming-type (keeps nearly all alpha for the end) and plain Bonferroni
  (``alpha / K`` per look) are available.
* Stopping early for time: when ``max_duration`` passes, one final look on all pairs so
  far spends whatever alpha is left, then the candidate is promoted or rejected. Time
  does not depend on the losses, so the bound still holds.

Why not an always-valid mixture SPRT: it allows a decision at every pair, but at the
same alpha its boundary at the planned horizon is higher (less power at max_pairs), it
needs a tuned mixing scale, and with an estimated variance it is only asymptotically
valid. Looks every 2,000 pairs lose little, since labels arrive in batches anyway.

Worse candidates (a "regression" in the testing sense, whatever the model's task). A
candidate is rejected early when it is significantly *worse* than the champion by more
than ``regression_tolerance`` (relative): the same looks and spending test
``H0: E[L_cand] <= (1 + tol) E[L_champ]``, so noise alone does not reject a good
candidate. Otherwise it is rejected when ``max_pairs`` or ``max_duration`` is reached
without a promotion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import special

from streams.contracts import PairedTest

Spending = Literal["pocock", "obrien_fleming", "bonferroni"]
Action = Literal["promote", "reject", "continue"]


class ShadowPolicy(BaseModel):
    """When a shadow comparison may decide, and at which levels (all per model)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_pairs: int = Field(default=2000, ge=30)
    look_every: int = Field(default=2000, ge=1)
    max_pairs: int = Field(default=50_000, ge=30)
    max_duration: timedelta = timedelta(hours=6)
    alpha: float = Field(default=0.01, gt=0.0, lt=0.5)
    min_relative_improvement: float = Field(default=0.01, ge=0.0, lt=1.0)
    regression_tolerance: float = Field(default=0.02, ge=0.0)
    regression_alpha: float = Field(default=0.01, gt=0.0, lt=0.5)
    spending: Spending = "pocock"

    @model_validator(mode="after")
    def _check(self) -> ShadowPolicy:
        if self.min_pairs > self.max_pairs:
            raise ValueError("min_pairs must not exceed max_pairs")
        return self

    def looks(self) -> tuple[int, ...]:
        """The pre-set pair counts at which the test is run."""
        counts = list(range(self.min_pairs, self.max_pairs, self.look_every))
        return (*counts, self.max_pairs)

    def spent(self, n: int, alpha: float) -> float:
        """Alpha spent up to and including a look at ``n`` pairs (``A(n / max_pairs)``)."""
        t = min(max(n / self.max_pairs, 0.0), 1.0)
        if self.spending == "pocock":
            return alpha * math.log1p((math.e - 1.0) * t)
        if self.spending == "obrien_fleming":
            if t == 0.0:
                return 0.0
            z = special.ndtri(1.0 - alpha / 2.0)
            return float(2.0 * special.ndtr(-z / math.sqrt(t)))
        looks = self.looks()
        done = sum(1 for b in looks if b <= n)
        return alpha * done / len(looks)

    def levels(self, alpha: float | None = None) -> tuple[float, ...]:
        """Nominal one-sided level of each pre-set look; they sum to ``alpha``."""
        a = self.alpha if alpha is None else alpha
        out, prev = [], 0.0
        for b in self.looks():
            cur = self.spent(b, a)
            out.append(cur - prev)
            prev = cur
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Moments:
    """Moments of the paired losses after ``n`` pairs (a snapshot of :class:`PairedStats`)."""

    n: int = 0
    mean_champion: float = 0.0
    mean_candidate: float = 0.0
    m2_champion: float = 0.0
    m2_candidate: float = 0.0
    comoment: float = 0.0

    def merge(self, other: Moments) -> Moments:
        """Moments of both samples together (Chan et al.'s parallel update)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        dx = other.mean_champion - self.mean_champion
        dy = other.mean_candidate - self.mean_candidate
        w = self.n * other.n / n
        return Moments(
            n=n,
            mean_champion=self.mean_champion + dx * other.n / n,
            mean_candidate=self.mean_candidate + dy * other.n / n,
            m2_champion=self.m2_champion + other.m2_champion + dx * dx * w,
            m2_candidate=self.m2_candidate + other.m2_candidate + dy * dy * w,
            comoment=self.comoment + other.comoment + dx * dy * w,
        )

    @classmethod
    def of(cls, champion: np.ndarray, candidate: np.ndarray) -> Moments:
        """Moments of two equal-length arrays of losses."""
        n = len(champion)
        if n == 0:
            return cls()
        mx, my = float(champion.mean()), float(candidate.mean())
        cx, cy = champion - mx, candidate - my
        return cls(n, mx, my, float(cx @ cx), float(cy @ cy), float(cx @ cy))

    def linear(self, a: float, b: float) -> tuple[float, float]:
        """Mean and sample variance of ``a * L_champ - b * L_cand``."""
        mean = a * self.mean_champion - b * self.mean_candidate
        if self.n < 2:
            return mean, math.nan
        m2 = a * a * self.m2_champion + b * b * self.m2_candidate - 2 * a * b * self.comoment
        return mean, max(m2, 0.0) / (self.n - 1)

    @property
    def mean_difference(self) -> float:
        """Mean of ``d = loss_champion - loss_candidate`` (positive: candidate better)."""
        return self.mean_champion - self.mean_candidate

    @property
    def variance_difference(self) -> float:
        """Sample variance of ``d``."""
        return self.linear(1.0, 1.0)[1]

    @property
    def relative_improvement(self) -> float:
        """``mean(d) / mean(L_champ)``: the candidate's relative loss reduction."""
        return self.mean_difference / self.mean_champion if self.mean_champion > 0 else 0.0


class PairedStats:
    """Running paired-loss moments (Welford), with snapshots taken exactly at the looks.

    >>> stats = PairedStats(looks=(2,))
    >>> stats.add(0.7, 0.5); stats.add(0.6, 0.5); stats.add(0.9, 0.1)
    >>> stats.n, stats.snapshots[0].n, round(stats.moments.mean_difference, 3)
    (3, 2, 0.367)
    """

    def __init__(self, looks: Sequence[int] = ()) -> None:
        self.looks = tuple(sorted(set(looks)))
        self.snapshots: list[Moments] = []
        self._n = 0
        self._mx = self._my = self._m2x = self._m2y = self._c = 0.0

    @classmethod
    def for_policy(cls, policy: ShadowPolicy) -> PairedStats:
        """Stats that snapshot at the policy's looks."""
        return cls(policy.looks())

    @classmethod
    def restore(
        cls, looks: Sequence[int], moments: Moments, snapshots: Sequence[Moments]
    ) -> PairedStats:
        """Stats continued from saved moments and look snapshots (a restarted service)."""
        stats = cls(looks)
        stats.snapshots = list(snapshots)
        stats._n, stats._mx, stats._my = moments.n, moments.mean_champion, moments.mean_candidate
        stats._m2x, stats._m2y, stats._c = (
            moments.m2_champion, moments.m2_candidate, moments.comoment)
        return stats

    @property
    def n(self) -> int:
        return self._n

    @property
    def moments(self) -> Moments:
        """The current moments."""
        return Moments(self._n, self._mx, self._my, self._m2x, self._m2y, self._c)

    def add(self, champion_loss: float, candidate_loss: float) -> None:
        """Add one pair (Welford update) and snapshot if a look count is reached."""
        champion_loss, candidate_loss = float(champion_loss), float(candidate_loss)
        self._n += 1
        dx = champion_loss - self._mx
        dy = candidate_loss - self._my
        self._mx += dx / self._n
        self._my += dy / self._n
        self._m2x += dx * (champion_loss - self._mx)
        self._m2y += dy * (candidate_loss - self._my)
        self._c += dx * (candidate_loss - self._my)
        self._snapshot_if_look()

    def add_many(self, champion: np.ndarray, candidate: np.ndarray) -> None:
        """Add pairs in bulk (vectorised), split at the looks so snapshots stay exact."""
        champion = np.asarray(champion, dtype=np.float64)
        candidate = np.asarray(candidate, dtype=np.float64)
        if champion.shape != candidate.shape or champion.ndim != 1:
            raise ValueError("champion and candidate losses must be 1-d and equal length")
        start = 0
        while start < len(champion):
            nxt = self._next_look()
            stop = len(champion) if nxt is None else min(len(champion), start + nxt - self._n)
            m = self.moments.merge(Moments.of(champion[start:stop], candidate[start:stop]))
            self._n, self._mx, self._my = m.n, m.mean_champion, m.mean_candidate
            self._m2x, self._m2y, self._c = m.m2_champion, m.m2_candidate, m.comoment
            self._snapshot_if_look()
            start = stop

    def _next_look(self) -> int | None:
        j = len(self.snapshots)
        return self.looks[j] if j < len(self.looks) else None

    def _snapshot_if_look(self) -> None:
        nxt = self._next_look()
        if nxt is not None and self._n == nxt:
            self.snapshots.append(self.moments)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a candidate now, why, and the test behind it."""

    action: Action
    reason: str
    test: PairedTest | None = None
    samples: int = 0
    look: int | None = None  # 1-based look index, None for non-look decisions
    level: float | None = None  # nominal level the test was held to


def paired_t(moments: Moments, a: float, b: float) -> tuple[float, float]:
    """One-sided paired t-test of ``E[a L_champ - b L_cand] > 0``: (statistic, p-value)."""
    mean, var = moments.linear(a, b)
    if moments.n < 2 or not var > 0.0:
        stat = math.inf if mean > 0 else -math.inf if mean < 0 else 0.0
        return stat, (0.0 if mean > 0 else 1.0)
    stat = mean / math.sqrt(var / moments.n)
    return stat, float(special.stdtr(moments.n - 1, -stat))


def worse_by_more_than(moments: Moments, tolerance: float) -> tuple[float, float]:
    """One-sided paired t-test of ``E[L_cand] > (1 + tolerance) E[L_champ]`` (the
    candidate worse by more than ``tolerance``, relative): (statistic, p-value)."""
    # E[L_cand - (1 + tol) L_champ] > 0  <=>  E[-(1 + tol) L_champ + L_cand] > 0
    return paired_t(moments, -(1.0 + tolerance), -1.0)


def _promotion_test(m: Moments, policy: ShadowPolicy, spending: str) -> PairedTest:
    stat, p = paired_t(m, 1.0 - policy.min_relative_improvement, 1.0)
    return PairedTest(
        method=f"paired-t one-sided, margin {policy.min_relative_improvement:g}, {spending}",
        statistic=stat,
        p_value=p,
        mean_difference=m.mean_difference,
        relative_improvement=m.relative_improvement,
    )


def _regression_test(m: Moments, policy: ShadowPolicy, spending: str) -> PairedTest:
    stat, p = worse_by_more_than(m, policy.regression_tolerance)
    return PairedTest(
        method=f"paired-t one-sided regression, tolerance {policy.regression_tolerance:g}, "
        f"{spending}",
        statistic=stat,
        p_value=p,
        mean_difference=m.mean_difference,
        relative_improvement=m.relative_improvement,
    )


def _seconds(elapsed: timedelta | float) -> float:
    return elapsed.total_seconds() if isinstance(elapsed, timedelta) else float(elapsed)


def decide(
    stats: PairedStats, policy: ShadowPolicy, elapsed: timedelta | float
) -> Decision:
    """Promote, reject or continue, from the looks reached so far (idempotent, pure).

    ``elapsed`` is the time since the shadow comparison started (timedelta or seconds).
    ``stats`` must have been built with ``PairedStats.for_policy(policy)``.
    """
    looks = policy.looks()
    if stats.looks != looks:
        raise ValueError("stats were not built for this policy's looks")
    levels = policy.levels()
    reg_levels = policy.levels(policy.regression_alpha)
    spending = f"{policy.spending} spending over {len(looks)} looks"
    for j, snap in enumerate(stats.snapshots):
        promo = _promotion_test(snap, policy, spending)
        if promo.p_value <= levels[j]:
            return Decision("promote", f"better by at least {policy.min_relative_improvement:.1%} "
                            f"at look {j + 1}", promo, snap.n, j + 1, levels[j])
        reg = _regression_test(snap, policy, spending)
        if reg.p_value <= reg_levels[j]:
            return Decision("reject", f"worse than the champion by more than "
                            f"{policy.regression_tolerance:.1%} at look {j + 1}",
                            reg, snap.n, j + 1, reg_levels[j])
    done = len(stats.snapshots)
    last_test = _promotion_test(stats.snapshots[-1], policy, spending) if done else None
    if done == len(looks):
        return Decision("reject", f"no significant improvement after max_pairs={policy.max_pairs}",
                        last_test, stats.snapshots[-1].n, done, levels[-1])
    if _seconds(elapsed) >= policy.max_duration.total_seconds():
        m = stats.moments
        if m.n >= policy.min_pairs and m.n > (stats.snapshots[-1].n if done else 0):
            level = policy.alpha - sum(levels[:done])
            promo = _promotion_test(m, policy, spending + ", final look at time limit")
            if promo.p_value <= level:
                return Decision("promote", "better at the final look at the time limit",
                                promo, m.n, done + 1, level)
            return Decision("reject", "time limit reached without significant improvement",
                            promo, m.n, done + 1, level)
        return Decision("reject", f"time limit reached with {m.n} pairs", last_test, m.n)
    return Decision("continue", f"{stats.n} pairs, {done} of {len(looks)} looks done",
                    last_test, stats.n)


def check_baseline(parent_version: int | None, champion_version: int | None) -> Decision | None:
    """Reject a candidate whose parent is no longer the champion (see package docstring)."""
    if parent_version is not None and parent_version != champion_version:
        return Decision(
            "reject",
            f"parent version {parent_version} is no longer champion "
            f"(now {champion_version}); comparison baseline changed",
        )
    return None
