"""Per-window statistics: PSI against a plain implementation, KS against scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, ks_2samp

from services.drift.ks import P_VALUE_REL_TOL
from services.drift.profile import OTHER, build_reference_profile
from services.drift.stats import WindowStatsEngine, window_stats
from services.featurespec import FeatureSpec, ModelSpec

EPS = 1e-4


def slow_numeric_psi(ref_values: list[float], win_values: list[float], edges: list[float]) -> float:
    """PSI written out: bins [e_(i-1), e_i) with open ends, missing (NaN) its own bin."""

    def shares(values: list[float]) -> list[float]:
        counts = [0] * (len(edges) + 2)
        for v in values:
            if math.isnan(v):
                counts[-1] += 1
                continue
            i = 0
            while i < len(edges) and v >= edges[i]:
                i += 1
            counts[i] += 1
        return [c / len(values) for c in counts]

    total = 0.0
    for r, w in zip(shares(ref_values), shares(win_values), strict=True):
        r, w = max(r, EPS), max(w, EPS)
        total += (w - r) * math.log(w / r)
    return total


def quantile_edges(ref_values: list[float], n_bins: int = 10) -> list[float]:
    """The documented binning rule, computed here: ``np.quantile`` (linear) of the finite
    reference values at ``1/n_bins ... (n_bins - 1)/n_bins``, tied edges merged.

    The probabilities are ``np.linspace``'s bit for bit: an edge that lands on a
    reference value must equal it exactly, since a window value on it is binned up."""
    values = np.asarray(ref_values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    probabilities = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return sorted({float(q) for q in np.quantile(finite, probabilities)})


def _bucket(v: object, kept: tuple[str, ...]) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "<missing>"
    return str(v) if str(v) in kept else OTHER


def slow_categorical_psi(ref: list[object], win: list[object], kept: tuple[str, ...]) -> float:
    def bucket(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "<missing>"
        return str(v) if str(v) in kept else OTHER

    names = [*kept, OTHER, "<missing>"]
    total = 0.0
    for name in names:
        r = max(sum(bucket(v) == name for v in ref) / len(ref), EPS)
        w = max(sum(bucket(v) == name for v in win) / len(win), EPS)
        total += (w - r) * math.log(w / r)
    return total


def _spec(n_num: int, cats: tuple[str, ...] = ()) -> ModelSpec:
    feats = [FeatureSpec(f"x{i}", "numeric") for i in range(n_num)]
    feats += [FeatureSpec(c, "categorical") for c in cats]
    return ModelSpec(model="m", entity="e", features=tuple(feats))


def _adversarial_reference(rng: np.random.Generator, n: int) -> pd.DataFrame:
    cols = {
        "x0": rng.normal(size=n),
        "x1": np.round(rng.exponential(size=n), 1),  # heavy ties
        "x2": np.full(n, 3.0),  # constant
        "x3": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),  # missing
        "x4": np.where(rng.random(n) < 0.01, np.inf, rng.normal(size=n)),  # infinities
        "x5": np.full(n, np.nan),  # all missing
    }
    return pd.DataFrame(cols)


def _windows(rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for n in (1, 2, 7, 500, 12_000):
        w = rng.normal(0.2, 1.3, size=(n, 6))
        w[:, 1] = np.round(np.abs(w[:, 1]), 1)
        w[:, 2] = 3.0
        w[rng.random(n) < 0.2, 3] = np.nan
        w[rng.random(n) < 0.05, 4] = -np.inf
        w[:, 5] = rng.normal(size=n)
        out.append(w)
    special = rng.normal(size=(40, 6))
    special[:, 0] = np.nan  # all missing in the window
    special[:, 2] = 4.0  # constant, moved
    special[:5, 4] = np.inf
    out.append(special)
    return out


def test_numeric_psi_and_ks_on_adversarial_data() -> None:
    rng = np.random.default_rng(0)
    ref = _adversarial_reference(rng, 15_000)
    spec = _spec(6)
    profile = build_reference_profile(ref, spec, "snap")
    engine = WindowStatsEngine(profile, spec)
    for w in _windows(rng):
        stats = engine.compute(w)
        for j, s in enumerate(stats):
            p = profile.numeric[j]
            edges = quantile_edges(ref[f"x{j}"].tolist())
            assert p.edges.tolist() == edges
            expected = slow_numeric_psi(ref[f"x{j}"].tolist(), w[:, j].tolist(), edges)
            assert s.psi == pytest.approx(expected, abs=1e-12, rel=1e-12)
            assert s.missing_share == np.isnan(w[:, j]).mean()
            assert len(s.bins) == len(s.reference_shares) == len(s.window_shares)
            assert len(s.bins) == p.edges.size + 2 and s.bins[-1] == "missing"
            assert sum(s.window_shares) == pytest.approx(1.0)
            assert sum(s.reference_shares) == pytest.approx(1.0)
            win = w[~np.isnan(w[:, j]), j]
            refv = ref[f"x{j}"].to_numpy()
            refv = refv[~np.isnan(refv)]
            if win.size == 0 or refv.size == 0:
                assert s.ks_statistic is None and s.ks_pvalue is None
                continue
            expected_ks = ks_2samp(win, refv)
            assert s.ks_statistic == expected_ks.statistic
            assert s.ks_pvalue == pytest.approx(expected_ks.pvalue, rel=P_VALUE_REL_TOL, abs=0)


@settings(max_examples=60, deadline=None)
@given(
    ref=st.lists(st.floats(-1e6, 1e6) | st.just(float("nan")), min_size=1, max_size=300),
    win=st.lists(
        st.floats(allow_nan=True, allow_infinity=True) | st.integers(-3, 3),
        min_size=1,
        max_size=200,
    ),
    n_bins=st.integers(1, 12),
)
def test_psi_property(ref: list[float], win: list[float], n_bins: int) -> None:
    spec = _spec(1)
    profile = build_reference_profile(pd.DataFrame({"x0": ref}), spec, "s", n_bins=n_bins)
    w = np.asarray(win, dtype=np.float64)[:, None]
    (s,) = window_stats(profile, spec, w)
    edges = quantile_edges(ref, n_bins)
    assert profile.numeric[0].edges.tolist() == edges
    expected = slow_numeric_psi(ref, w[:, 0].tolist(), edges)
    assert s.psi == pytest.approx(expected, abs=1e-12, rel=1e-12)


def test_categorical_psi_unseen_and_missing() -> None:
    rng = np.random.default_rng(1)
    ref_vals = list(rng.choice(["a", "b", "c", "rare"], p=[0.5, 0.3, 0.198, 0.002], size=5_000))
    ref_vals[:100] = [None] * 100
    spec = _spec(0, ("c1",))
    profile = build_reference_profile(pd.DataFrame({"c1": ref_vals}), spec, "s")
    kept = profile.categorical[0].categories
    assert "rare" not in kept and set(kept) == {"a", "b", "c"}
    windows = [
        ["a", "b", "new", None, "rare", float("nan"), 7] * 20,
        ["a"] * 30,
        [None] * 10,
        ["zzz"],
    ]
    for win in windows:
        (s,) = window_stats(profile, spec, np.empty((len(win), 0)), {"c1": win})
        assert s.kind == "categorical" and s.ks_statistic is None
        assert s.psi == pytest.approx(slow_categorical_psi(ref_vals, win, kept), abs=1e-12)
        missing = sum(v is None or (isinstance(v, float) and math.isnan(v)) for v in win)
        assert s.missing_share == missing / len(win)
        ref_counts = np.array(
            [*profile.categorical[0].shares, profile.categorical[0].missing_share]
        )
        win_counts = np.array(
            [
                sum(b == name for b in map(lambda v: _bucket(v, kept), win))
                for name in [*kept, OTHER, "<missing>"]
            ],
            dtype=float,
        )
        assert s.bins == (*kept, "other", "missing")
        assert sum(s.window_shares) == pytest.approx(1.0)
        assert s.tvd == pytest.approx(0.5 * np.abs(win_counts / len(win) - ref_counts).sum())
        table = np.vstack([ref_counts * len(ref_vals), win_counts])
        table = table[:, table.sum(axis=0) > 0]
        expected_p = chi2_contingency(table, correction=False).pvalue if table.shape[1] > 1 else 1.0
        assert s.chi2_pvalue == pytest.approx(expected_p, rel=1e-9, abs=1e-300)


def test_identical_window_has_zero_psi() -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"x0": rng.normal(size=2_000), "c": rng.choice(["p", "q"], 2_000)})
    spec = ModelSpec("m", "e", (FeatureSpec("x0", "numeric"), FeatureSpec("c", "categorical")))
    profile = build_reference_profile(ref, spec, "s")
    stats = window_stats(profile, spec, ref[["x0"]].to_numpy(), {"c": ref["c"].tolist()})
    assert [s.name for s in stats] == ["x0", "c"]
    assert stats[0].psi == pytest.approx(0.0, abs=1e-15)
    assert stats[1].psi == pytest.approx(0.0, abs=1e-15)
    assert stats[0].ks_statistic == 0.0 and stats[0].ks_pvalue == 1.0


def test_shape_errors() -> None:
    spec = _spec(2)
    profile = build_reference_profile(pd.DataFrame({"x0": [1.0, 2.0], "x1": [3.0, 4.0]}), spec, "s")
    engine = WindowStatsEngine(profile, spec)
    with pytest.raises(ValueError):
        engine.compute(np.zeros((3, 3)))
    with pytest.raises(ValueError):
        engine.compute(np.zeros((0, 2)))


def test_ks_method_asymp_on_small_samples() -> None:
    rng = np.random.default_rng(4)
    spec = _spec(1)
    ref = rng.normal(size=3_000)
    profile = build_reference_profile(pd.DataFrame({"x0": ref}), spec, "s")
    w = rng.normal(0.1, 1, size=(800, 1))
    (auto,) = window_stats(profile, spec, w)
    (asymp,) = window_stats(profile, spec, w, ks_method="asymp")
    exact = ks_2samp(w[:, 0], ref)
    assert auto.ks_pvalue == exact.pvalue and auto.ks_statistic == exact.statistic
    expected = ks_2samp(w[:, 0], ref, method="asymp")
    assert asymp.ks_statistic == expected.statistic
    assert asymp.ks_pvalue == pytest.approx(expected.pvalue, rel=P_VALUE_REL_TOL)
    with pytest.raises(ValueError):
        WindowStatsEngine(profile, spec, ks_method="exact")  # type: ignore[arg-type]
