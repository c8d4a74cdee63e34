"""The drift decision for one window: which features drifted, and the dataset verdict.

A feature has drifted when ``PSI >= psi_threshold``, or when its test is significant
at ``ks_alpha / n_tested`` (Bonferroni over the tested features) *and* its effect is at
least ``ks_min_statistic`` (an effect-size floor, so large windows do not alarm on
shifts too small to matter). The test of a numeric feature is KS (effect: the KS
statistic); of a categorical feature, with ``categorical_test`` on (the default), a
chi-square homogeneity test (effect: the total variation distance, the categorical
analogue of the KS statistic). Without it, categorical features drift by PSI only
and the Bonferroni count is the numeric features alone. A window has
drifted when at least ``drifted_share`` of the features drifted, or any critical
feature did (critical: marked in the spec or named in the policy).

The champion's prediction drift (:mod:`services.drift.prediction`, computed when the
model's ``drift.prediction`` is on) is reported on its own; with
``prediction_in_policy`` on (default off) a drifted prediction entry also makes the
window drifted, as a critical feature would (:func:`with_prediction`). It never counts
in the drifted share, which stays a share of the features.

What a window is compared with is the reference profile, or, when the model declares
a cycle (:class:`Seasonality`, ``drift.seasonality``), the profile of the reference rows
of the window's phase (:mod:`services.drift.season`); the decision above is the same.

Whether a drifted window leads to a retrain request is a separate question
(consecutive windows, cooldown, one request in flight), answered by
:class:`services.drift.trigger.RetrainTrigger` with the trigger numbers kept here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.drift.trigger import RetrainTrigger, TriggerConfig, TriggerDecision
from services.featurespec import FeatureKind, ModelSpec

if TYPE_CHECKING:  # the statistics (numpy, scipy) are not needed to read a policy
    from services.drift.stats import FeatureStats


class DriftPolicy(BaseModel):
    """Every number of the drift decision, configurable per model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    psi_threshold: float = Field(0.2, gt=0)
    ks_alpha: float = Field(0.01, gt=0, lt=1)
    bonferroni: bool = True
    ks_min_statistic: float = Field(0.075, ge=0, le=1)
    categorical_test: bool = True
    drifted_share: float = Field(0.3, gt=0, le=1)
    critical_features: frozenset[str] = frozenset()
    consecutive_windows: int = Field(2, ge=1)
    cooldown: timedelta = timedelta(minutes=15)
    in_flight_timeout: timedelta = timedelta(hours=2)
    # A drifted prediction-drift entry makes the window drifted (see module docstring).
    prediction_in_policy: bool = False

    def ks_level(self, n_tested: int) -> float:
        """The per-feature significance level (Bonferroni over ``n_tested``)."""
        return self.ks_alpha / max(n_tested, 1) if self.bonferroni else self.ks_alpha

    def n_tested(self, spec: ModelSpec) -> int:
        """How many features get a significance test (the Bonferroni count)."""
        return len(spec.features) if self.categorical_test else len(spec.numeric)

    def trigger_config(self) -> TriggerConfig:
        """The retrain trigger's numbers (consecutive windows, cooldown, in-flight timeout)."""
        return TriggerConfig(
            consecutive=self.consecutive_windows,
            cooldown=self.cooldown,
            in_flight_timeout=self.in_flight_timeout,
        )


class Seasonality(BaseModel):
    """A cycle the model's data follows (``drift.seasonality``): each window is compared
    with the reference rows of the same phase of the cycle, not with all of them.

    The phase of an event is its event time (epoch seconds, UTC) modulo ``period``,
    counted in ``buckets`` equal parts; a window's phase range is the buckets from its
    first to its last event time, widened one bucket on each side while it holds fewer
    than ``min_reference_rows`` reference rows (see :mod:`services.drift.season`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    period: timedelta  # e.g. P1D (a daily cycle), P7D (a weekly one)
    buckets: int = Field(24, ge=1)  # phase resolution: ranges start and end on buckets
    # Fewer rows than this in a window's phase range: the range widens (PSI's quantile
    # bins and KS need enough reference rows: 20 per bin at the default 10 bins).
    min_reference_rows: int = Field(200, ge=1)

    @field_validator("period")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("seasonality.period must be > 0")
        return value

    @property
    def period_s(self) -> float:
        """The period in seconds."""
        return self.period.total_seconds()


class DriftSettings(DriftPolicy):
    """A model's ``drift`` section: the policy plus how its windows are cut and counted.

    The live monitor and ``driftloop drift check`` apply the same object, so a file
    check and the stream agree on every number.
    """

    window_events: int = Field(5_000, ge=1)  # a window closes at this many events ...
    window_seconds: float = Field(60.0, gt=0)  # ... or this much event time
    # Wall-clock seconds without events after which an open window is reported
    # (default: window_seconds).
    idle_flush_seconds: float | None = Field(None, gt=0)
    # Smaller windows (a quiet stream's last one) are reported but never trigger:
    # their PSI is mostly noise.
    min_window_events: int = Field(200, ge=0)
    ks_method: Literal["auto", "asymp"] = "auto"
    # Compare the champion's predictions per window with its predictions on its
    # reference snapshot (a ``prediction`` entry in each report; scores every window).
    prediction: bool = False
    # A declared cycle: windows compared with the reference rows of their phase
    # (default off: every window against the whole reference).
    seasonality: Seasonality | None = None

    @property
    def idle_flush(self) -> float:
        """``idle_flush_seconds``, defaulting to ``window_seconds``."""
        return self.idle_flush_seconds if self.idle_flush_seconds is not None else (
            self.window_seconds)


@dataclass(frozen=True, slots=True)
class FeatureVerdict:
    """One feature's statistics and whether it drifted (and why)."""

    stats: FeatureStats
    drifted: bool
    critical: bool
    by_psi: bool
    by_ks: bool  # by the significance test plus effect floor (KS, or chi-square/TVD)

    @property
    def name(self) -> str:
        """Feature name."""
        return self.stats.name

    @property
    def kind(self) -> FeatureKind:
        """``numeric`` or ``categorical``."""
        return self.stats.kind


@dataclass(frozen=True, slots=True)
class WindowVerdict:
    """The decision for one window."""

    features: tuple[FeatureVerdict, ...]
    drifted_share: float
    drifted: bool
    critical_drifted: tuple[str, ...]
    ks_level: float
    prediction_drifted: bool = False  # set by with_prediction when the policy uses it

    @property
    def drifted_features(self) -> tuple[str, ...]:
        """Names of the features that drifted."""
        return tuple(f.name for f in self.features if f.drifted)


def evaluate_window(
    stats: Sequence[FeatureStats], spec: ModelSpec, policy: DriftPolicy
) -> WindowVerdict:
    """Apply ``policy`` to one window's statistics."""
    critical_names = {f.name for f in spec.features if f.critical} | set(policy.critical_features)
    level = policy.ks_level(policy.n_tested(spec))
    verdicts = []
    for s in stats:
        by_psi = s.psi >= policy.psi_threshold
        if s.kind == "numeric":
            p_value, effect = s.ks_pvalue, s.ks_statistic
        elif policy.categorical_test:
            p_value, effect = s.chi2_pvalue, s.tvd
        else:
            p_value = effect = None
        by_ks = (
            p_value is not None
            and effect is not None
            and p_value < level
            and effect >= policy.ks_min_statistic
        )
        verdicts.append(
            FeatureVerdict(
                stats=s,
                drifted=by_psi or by_ks,
                critical=s.name in critical_names,
                by_psi=by_psi,
                by_ks=by_ks,
            )
        )
    n = len(verdicts)
    share = sum(v.drifted for v in verdicts) / n if n else 0.0
    critical_drifted = tuple(v.name for v in verdicts if v.drifted and v.critical)
    return WindowVerdict(
        features=tuple(verdicts),
        drifted_share=share,
        drifted=bool(n) and (share >= policy.drifted_share or bool(critical_drifted)),
        critical_drifted=critical_drifted,
        ks_level=level,
    )


def with_prediction(
    verdict: WindowVerdict, prediction_drifted: bool | None, policy: DriftPolicy
) -> WindowVerdict:
    """``verdict`` with the prediction entry folded in when ``policy.prediction_in_policy``
    is on (a drifted prediction makes the window drifted); unchanged otherwise or when
    the window has no prediction entry (``None``)."""
    if not policy.prediction_in_policy or not prediction_drifted:
        return verdict
    return replace(verdict, drifted=True, prediction_drifted=True)


def decide_window(
    trigger: RetrainTrigger,
    drift: DriftSettings,
    verdict: WindowVerdict,
    *,
    n_events: int,
    window_end: datetime,
    window_id: str,
    request_id: str,
    open_episode: str | None = None,
) -> TriggerDecision:
    """Whether a reported window asks for a retrain: the live monitor's and the file
    check's one decision path.

    A window under ``min_window_events`` is reported but never counts (outcome
    ``too_small``; the trigger does not see it); every other window goes through the
    trigger (streak, an open episode to join, cooldown, one request in flight).
    """
    if n_events < drift.min_window_events:
        return TriggerDecision(
            fire=False, outcome="too_small",
            reason=f"{n_events} events < min_window_events {drift.min_window_events}",
            streak=len(trigger.state.streak_windows), window_id=window_id,
        )
    return trigger.observe(verdict.drifted, window_end, window_id, request_id=request_id,
                           open_episode=open_episode)
