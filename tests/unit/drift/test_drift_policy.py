"""The window verdict and the retrain trigger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.drift.policy import DriftPolicy, evaluate_window
from services.drift.stats import FeatureStats
from services.drift.trigger import RetrainTrigger, TriggerConfig
from services.featurespec import FeatureSpec, ModelSpec


def _spec(n_num: int = 10, critical: tuple[str, ...] = ()) -> ModelSpec:
    feats = tuple(
        FeatureSpec(f"x{i}", "numeric", critical=f"x{i}" in critical) for i in range(n_num)
    )
    return ModelSpec("m", "e", (*feats, FeatureSpec("c", "categorical", "c" in critical)))


def _stats(spec: ModelSpec, **over: tuple[float, float | None, float | None]) -> list[FeatureStats]:
    out = []
    for f in spec.features:
        psi, d, p = over.get(
            f.name, (0.01, 0.01, 0.9) if f.kind == "numeric" else (0.01, None, None)
        )
        out.append(FeatureStats(f.name, f.kind, psi, d, p, 0.0))
    return out


def test_bonferroni_and_effect_floor() -> None:
    spec = _spec(10)  # KS level 0.01 / 10 = 0.001 (numeric features only)
    policy = DriftPolicy(categorical_test=False)
    v = evaluate_window(_stats(spec, x0=(0.05, 0.2, 0.002)), spec, policy)
    assert not v.features[0].drifted  # p below 0.01 but not below 0.001
    assert v.ks_level == pytest.approx(0.001)
    v = evaluate_window(_stats(spec, x0=(0.05, 0.2, 0.0009)), spec, policy)
    assert v.features[0].drifted and v.features[0].by_ks
    v = evaluate_window(_stats(spec, x0=(0.05, 0.05, 1e-30)), spec, policy)
    assert not v.features[0].drifted  # significant but below the effect floor
    v = evaluate_window(
        _stats(spec, x0=(0.05, 0.2, 0.002)), spec, policy.model_copy(update={"bonferroni": False})
    )
    assert v.features[0].drifted


def test_bonferroni_counts_categorical_tests() -> None:
    spec = _spec(9)  # 9 numeric + 1 categorical tested: level 0.001
    v = evaluate_window(_stats(spec), spec, DriftPolicy())
    assert v.ks_level == pytest.approx(0.001)


def _cat(psi: float, tvd: float, p: float) -> FeatureStats:
    return FeatureStats("c", "categorical", psi, None, None, 0.0, tvd=tvd, chi2_pvalue=p)


def test_categorical_test_with_effect_floor() -> None:
    spec = _spec(9)
    base = _stats(spec)[:-1]
    policy = DriftPolicy(critical_features=frozenset({"c"}))
    v = evaluate_window([*base, _cat(0.19, 0.2, 1e-40)], spec, policy)
    assert v.features[-1].by_ks and v.drifted  # PSI below 0.2, but a clear, large shift
    v = evaluate_window([*base, _cat(0.01, 0.05, 1e-40)], spec, policy)
    assert not v.features[-1].drifted  # significant but small
    v = evaluate_window([*base, _cat(0.19, 0.2, 0.01)], spec, policy)
    assert not v.features[-1].drifted  # not significant at 0.01 / 10
    off = policy.model_copy(update={"categorical_test": False})
    v = evaluate_window([*base, _cat(0.19, 0.2, 1e-40)], spec, off)
    assert not v.features[-1].drifted


def test_psi_threshold_and_share() -> None:
    spec = _spec(9)  # 10 features: 3 drifted = 30%
    policy = DriftPolicy()
    two = {f"x{i}": (0.25, 0.01, 0.9) for i in range(2)}
    v = evaluate_window(_stats(spec, **two), spec, policy)
    assert v.drifted_features == ("x0", "x1") and v.drifted_share == pytest.approx(0.2)
    assert not v.drifted
    three = {f"x{i}": (0.2, 0.01, 0.9) for i in range(3)}  # PSI exactly at the threshold
    v = evaluate_window(_stats(spec, **three), spec, policy)
    assert v.drifted and v.drifted_share == pytest.approx(0.3)


def test_critical_feature_alone_drifts_window() -> None:
    spec = _spec(9, critical=("c",))
    v = evaluate_window(_stats(spec, c=(0.5, None, None)), spec, DriftPolicy())
    assert v.drifted and v.critical_drifted == ("c",)
    spec = _spec(9)
    v = evaluate_window(_stats(spec, c=(0.5, None, None)), spec, DriftPolicy())
    assert not v.drifted
    v = evaluate_window(
        _stats(spec, c=(0.5, None, None)), spec, DriftPolicy(critical_features=frozenset({"c"}))
    )
    assert v.drifted


def test_missing_ks_never_drifts_by_ks() -> None:
    spec = _spec(1)
    v = evaluate_window(_stats(spec, x0=(0.0, None, None)), spec, DriftPolicy())
    assert not v.features[0].drifted


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_trigger_consecutive_windows_and_in_flight() -> None:
    trig = RetrainTrigger(TriggerConfig(consecutive=2, cooldown=timedelta(minutes=15)))
    assert trig.observe(True, _t(0), "w0").outcome == "streak"
    assert trig.observe(False, _t(1), "w1").outcome == "calm"
    assert trig.observe(True, _t(2), "w2").outcome == "streak"
    d = trig.observe(True, _t(3), "w3", request_id="r1")
    assert d.fire and d.request_id == "r1" and d.streak_windows == ("w2", "w3")
    assert trig.in_flight == "r1"
    assert not trig.observe(True, _t(4), "w4").fire
    assert trig.observe(True, _t(5), "w5").outcome == "in_flight"
    assert not trig.clear_in_flight("other")
    assert trig.clear_in_flight("r1") and trig.in_flight is None
    # still within 15 minutes of the request: cooldown
    assert trig.observe(True, _t(6), "w6").outcome == "cooldown"
    d = trig.observe(True, _t(19), "w7", request_id="r2")
    assert d.fire and d.request_id == "r2"


def test_trigger_in_flight_timeout() -> None:
    trig = RetrainTrigger(
        TriggerConfig(consecutive=1, cooldown=timedelta(0), in_flight_timeout=timedelta(hours=2))
    )
    assert trig.observe(True, _t(0), "a").fire
    assert trig.observe(True, _t(60), "b").outcome == "in_flight"
    d = trig.observe(True, _t(121), "c")
    assert d.fire and d.expired_request_id == "a" and d.request_id == "c"


def test_trigger_redelivered_window_is_ignored() -> None:
    trig = RetrainTrigger(TriggerConfig(consecutive=2))
    trig.observe(True, _t(0), "w0")
    first = trig.observe(True, _t(1), "w1")
    assert first.fire
    again = trig.observe(True, _t(1), "w1")
    assert not again.fire and again.outcome == "repeat" and again.request_id == first.request_id
    # a redelivered window must not extend a streak either
    trig2 = RetrainTrigger(TriggerConfig(consecutive=3))
    trig2.observe(True, _t(0), "a")
    trig2.observe(True, _t(1), "a")
    assert trig2.observe(True, _t(2), "b").outcome == "streak"


def test_trigger_state_round_trip() -> None:
    cfg = TriggerConfig(consecutive=2, cooldown=timedelta(minutes=15))
    trig = RetrainTrigger(cfg)
    trig.observe(True, _t(0), "w0")
    trig.observe(True, _t(1), "w1", request_id="r1")
    trig.observe(True, _t(2), "w2")
    restored = RetrainTrigger.from_state_json(trig.state_json(), cfg)
    assert restored.state_json() == trig.state_json()
    assert restored.in_flight == "r1"
    assert restored.observe(True, _t(2), "w2").outcome == "repeat"
    assert restored.observe(True, _t(3), "w3").outcome == "in_flight"
    assert restored.clear_in_flight("r1")


def test_trigger_config_validation() -> None:
    with pytest.raises(ValueError):
        TriggerConfig(consecutive=0)
    with pytest.raises(ValueError):
        DriftPolicy(psi_threshold=-1)


def test_a_request_made_elsewhere_blocks_and_starts_the_cooldown() -> None:
    from datetime import UTC, datetime, timedelta

    from services.drift.trigger import RetrainTrigger, TriggerConfig

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = RetrainTrigger(TriggerConfig(consecutive=1, cooldown=timedelta(minutes=15)))
    trigger.record_request("other", t0)
    assert trigger.in_flight == "other"
    assert trigger.observe(True, t0 + timedelta(minutes=1), "w1").outcome == "in_flight"
    assert trigger.clear_in_flight("other")
    assert trigger.observe(True, t0 + timedelta(minutes=2), "w2").outcome == "cooldown"
    assert trigger.observe(True, t0 + timedelta(minutes=16), "w3").fire


def test_a_streak_during_an_open_episode_joins_it_without_firing_or_cooldown() -> None:
    """Bugs caught: a second request for one change; a join that starts the cooldown (the
    monitor could not ask once the other detector's episode closed)."""
    from datetime import UTC, datetime, timedelta

    from services.drift.trigger import RetrainTrigger, TriggerConfig

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = RetrainTrigger(TriggerConfig(consecutive=2, cooldown=timedelta(minutes=15)))
    assert trigger.observe(True, t0, "w1", open_episode="e1").outcome == "streak"
    joined = trigger.observe(True, t0 + timedelta(minutes=1), "w2", open_episode="e1")
    assert (joined.outcome, joined.fire, joined.streak_windows) == ("joined", False,
                                                                    ("w1", "w2"))
    assert trigger.in_flight is None and trigger.state.last_fired_at is None
    assert trigger.observe(True, t0 + timedelta(minutes=2), "w3").outcome == "streak"
    fired = trigger.observe(True, t0 + timedelta(minutes=3), "w4")
    assert fired.fire and fired.streak_windows == ("w3", "w4")
