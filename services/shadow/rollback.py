"""Watch a freshly promoted champion and say when to roll it back (pure, no I/O).

After a promotion, the new champion's live loss (its task's per-event loss: log loss,
cross-entropy or squared error) over its next ``window`` labelled events is compared
with a reference. If it is worse than ``(1 + margin)`` times the reference,
significantly, the previous champion is restored (cause ``rollback``). The margin is
relative, so it means the same for every task and label scale.

The reference, when there is a previous champion (``paired``): that champion's loss on
the *same* events, which the shadow evaluator keeps scoring during the watch. The test is
the shadow's own test for rejecting a worse candidate,
:func:`services.shadow.decision.worse_by_more_than`, of
``H0: E[L_new] <= (1 + margin) E[L_previous]``, so a rollback needs the old model to be
better on today's traffic, not merely the new one to be worse than it looked in shadow.
Why: a candidate promoted at the first look had the best of its shadow run's noise, and
live traffic that keeps changing raises every model's loss. Both made the unpaired
comparison roll back models that were better than the one restored (measured on the
closed-loop benchmark: a concept refinement at a live 1.85 squared error against its
shadow estimate 1.28 was replaced by its parent at about 2.5).

Without a previous champion the reference is the new champion's shadow estimate (mean,
variance and count of its per-event losses there): a one-sided z-test of ``H0: E[live]
<= (1 + margin) E[shadow]`` whose standard error counts both samples' noise.

Statistical guard: either test runs only at pre-set looks (``min_events``, then every
``look_every`` events, and at ``window``), each at ``alpha / K`` (Bonferroni over the K
looks), so continuous watching does not inflate the false-rollback rate above ``alpha``.
The snapshots are taken at the look counts exactly, as in
:mod:`services.shadow.decision`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import special

from services.shadow.decision import Moments, PairedStats, worse_by_more_than


class RollbackPolicy(BaseModel):
    """How long and how strictly a new champion is watched."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(default=5000, ge=2)
    min_events: int = Field(default=1000, ge=2)
    look_every: int = Field(default=1000, ge=1)
    margin: float = Field(default=0.05, ge=0.0)
    alpha: float = Field(default=0.01, gt=0.0, lt=0.5)

    @model_validator(mode="after")
    def _check(self) -> RollbackPolicy:
        if self.min_events > self.window:
            raise ValueError("min_events must not exceed window")
        return self

    def looks(self) -> tuple[int, ...]:
        """Event counts at which the live loss is tested."""
        return (*range(self.min_events, self.window, self.look_every), self.window)


@dataclass(frozen=True, slots=True)
class LossSummary:
    """Mean, sample variance and count of a set of per-event losses."""

    n: int
    mean: float
    variance: float


@dataclass(frozen=True, slots=True)
class RollbackStatus:
    """``watch`` (keep going), ``rollback`` or ``confirmed`` (window passed cleanly)."""

    action: Literal["watch", "rollback", "confirmed"]
    reason: str
    live: LossSummary | None = None
    statistic: float | None = None
    p_value: float | None = None


class RollbackMonitor:
    """Live-loss watcher for one promotion.

    ``paired``: each event also brings the previous champion's loss on it
    (:meth:`add`'s ``previous``), and the test is against that; events without it do not
    count. Otherwise the new champion's live losses are tested against ``shadow``.
    """

    def __init__(self, policy: RollbackPolicy, shadow: LossSummary,
                 paired: bool = False) -> None:
        if shadow.n < 2 or not shadow.mean > 0:
            raise ValueError("shadow estimate needs n >= 2 and a positive mean loss")
        self.policy = policy
        self.shadow = shadow
        self._looks = policy.looks()
        self.snapshots: list[LossSummary] = []
        # previous champion's loss as "champion", the new champion's as "candidate"
        self.pairs: PairedStats | None = PairedStats(self._looks) if paired else None
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0

    @classmethod
    def restore(
        cls, policy: RollbackPolicy, shadow: LossSummary, live: tuple[int, float, float],
        snapshots: list[LossSummary], pairs: tuple[Moments, list[Moments]] | None = None,
    ) -> RollbackMonitor:
        """A monitor continued from saved state: ``live`` is (count, mean, sum of squares);
        ``pairs`` the paired moments and their look snapshots (a paired watch)."""
        monitor = cls(policy, shadow, paired=pairs is not None)
        monitor._n, monitor._mean, monitor._m2 = live
        monitor.snapshots = list(snapshots)
        if pairs is not None:
            monitor.pairs = PairedStats.restore(monitor._looks, *pairs)
        return monitor

    def state(self) -> tuple[int, float, float]:
        """(count, mean, sum of squared deviations) of the live losses, for saving."""
        return self._n, self._mean, self._m2

    @property
    def paired(self) -> bool:
        """Whether the reference is the previous champion's live loss."""
        return self.pairs is not None

    @property
    def n(self) -> int:
        return self._n

    def add(self, loss: float, previous: float | None = None) -> None:
        """One live labelled event's loss, and the previous champion's on it (ignored once
        the window is full, and by a paired watch when ``previous`` is missing)."""
        if self._n >= self.policy.window or (self.pairs is not None and previous is None):
            return
        self._n += 1
        d = loss - self._mean
        self._mean += d / self._n
        self._m2 += d * (loss - self._mean)
        if self.pairs is not None and previous is not None:
            self.pairs.add(previous, loss)
        if len(self.snapshots) < len(self._looks) and self._n == self._looks[len(self.snapshots)]:
            self.snapshots.append(self.summary())

    def summary(self) -> LossSummary:
        """Live losses so far."""
        var = self._m2 / (self._n - 1) if self._n > 1 else math.nan
        return LossSummary(self._n, self._mean, var)

    def test(self, live: LossSummary) -> tuple[float, float]:
        """z statistic and one-sided p-value of live loss above (1 + margin) x shadow."""
        k = 1.0 + self.policy.margin
        se2 = live.variance / live.n + k * k * self.shadow.variance / self.shadow.n
        diff = live.mean - k * self.shadow.mean
        if not se2 > 0:
            return (math.inf if diff > 0 else -math.inf), (0.0 if diff > 0 else 1.0)
        z = diff / math.sqrt(se2)
        return z, float(special.ndtr(-z))

    def test_paired(self, pairs: Moments) -> tuple[float, float]:
        """Paired t statistic and one-sided p-value of the new champion's loss above
        (1 + margin) x the previous champion's, on the same events."""
        # the previous champion in the "champion" place, the new one as "candidate"
        return worse_by_more_than(pairs, self.policy.margin)

    def status(self) -> RollbackStatus:
        """Decision from the looks reached so far (idempotent)."""
        level = self.policy.alpha / len(self._looks)
        for j, snap in enumerate(self.snapshots):
            if self.pairs is not None:
                pairs = self.pairs.snapshots[j]
                z, p = self.test_paired(pairs)
                reference = (f"the previous champion's {pairs.mean_champion:.4f} on the same "
                             "events")
            else:
                z, p = self.test(snap)
                reference = f"the shadow estimate {self.shadow.mean:.4f}"
            if p <= level:
                return RollbackStatus(
                    "rollback",
                    f"live loss {snap.mean:.4f} over {snap.n} events exceeds {reference} "
                    f"by more than {self.policy.margin:.0%} (look {j + 1}, p={p:.2g})",
                    snap, z, p,
                )
        if len(self.snapshots) == len(self._looks):
            reference = "the previous champion's" if self.pairs is not None else "the shadow"
            return RollbackStatus(
                "confirmed", f"{self.policy.window} live events within {self.policy.margin:.0%} "
                f"of {reference} loss", self.snapshots[-1])
        return RollbackStatus("watch", f"{self._n} of {self.policy.window} live events",
                              self.summary())
