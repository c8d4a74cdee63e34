"""Watch a freshly promoted champion and say when to roll it back (pure, no I/O).

After a promotion, the new champion's live loss (its task's per-event loss: log loss,
cross-entropy or squared error) over its next ``window`` labelled events is compared
with the estimate its shadow run gave (mean, variance and count of its per-event losses
there). If live loss is worse than ``(1 + margin)`` times the shadow
estimate, significantly, the previous champion is restored (cause ``rollback``). The
margin is relative, so it means the same for every task and label scale.

Statistical guard: a one-sided z-test of ``H0: E[live] <= (1 + margin) * E[shadow]``
whose standard error counts both samples' noise (the shadow mean is an estimate too),
run only at pre-set looks (``min_events``, then every ``look_every`` events, and at
``window``), each at ``alpha / K`` (Bonferroni over the K looks), so continuous watching
does not inflate the false-rollback rate above ``alpha``. The snapshots are taken at the
look counts exactly, as in :mod:`services.shadow.decision`.

What it does not know: live traffic after a promotion may itself keep drifting, which
raises every model's loss. The margin absorbs moderate changes; the old champion is not
scored here, so the comparison is against the shadow estimate, not a live pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import special


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
    """Live-loss watcher for one promotion."""

    def __init__(self, policy: RollbackPolicy, shadow: LossSummary) -> None:
        if shadow.n < 2 or not shadow.mean > 0:
            raise ValueError("shadow estimate needs n >= 2 and a positive mean loss")
        self.policy = policy
        self.shadow = shadow
        self._looks = policy.looks()
        self.snapshots: list[LossSummary] = []
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0

    @classmethod
    def restore(
        cls, policy: RollbackPolicy, shadow: LossSummary, live: tuple[int, float, float],
        snapshots: list[LossSummary],
    ) -> RollbackMonitor:
        """A monitor continued from saved state: ``live`` is (count, mean, sum of squares)."""
        monitor = cls(policy, shadow)
        monitor._n, monitor._mean, monitor._m2 = live
        monitor.snapshots = list(snapshots)
        return monitor

    def state(self) -> tuple[int, float, float]:
        """(count, mean, sum of squared deviations) of the live losses, for saving."""
        return self._n, self._mean, self._m2

    @property
    def n(self) -> int:
        return self._n

    def add(self, loss: float) -> None:
        """One live labelled event's loss (ignored once the window is full)."""
        if self._n >= self.policy.window:
            return
        self._n += 1
        d = loss - self._mean
        self._mean += d / self._n
        self._m2 += d * (loss - self._mean)
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

    def status(self) -> RollbackStatus:
        """Decision from the looks reached so far (idempotent)."""
        level = self.policy.alpha / len(self._looks)
        for j, snap in enumerate(self.snapshots):
            z, p = self.test(snap)
            if p <= level:
                return RollbackStatus(
                    "rollback",
                    f"live loss {snap.mean:.4f} over {snap.n} events exceeds the shadow "
                    f"estimate {self.shadow.mean:.4f} by more than {self.policy.margin:.0%} "
                    f"(look {j + 1}, p={p:.2g})",
                    snap, z, p,
                )
        if len(self.snapshots) == len(self._looks):
            return RollbackStatus("confirmed", f"{self.policy.window} live events within margin",
                                  self.snapshots[-1])
        return RollbackStatus("watch", f"{self._n} of {self.policy.window} live events",
                              self.summary())
