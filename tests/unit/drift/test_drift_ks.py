"""KS statistic and p-value against scipy.stats.ks_2samp / kstwo."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp, kstwo

from services.drift.ks import (
    P_VALUE_REL_TOL,
    effective_n,
    ks_2samp_sorted,
    ks_statistic_sorted,
    ks_statistics,
    kstwo_sf,
)

pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")


def _scipy_d(a: np.ndarray, b: np.ndarray) -> float:
    return float(ks_2samp(a, b, method="asymp").statistic)


@pytest.mark.parametrize("seed", range(6))
def test_statistic_equals_scipy_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = np.sort(rng.normal(size=30_000))
    for shift in (0.0, 0.03, 0.3, 3.0):
        w = np.sort(rng.normal(shift, rng.uniform(0.5, 2.0), size=int(rng.integers(1, 12_000))))
        assert ks_statistic_sorted(w, ref) == _scipy_d(w, ref)


def test_statistic_equals_scipy_on_adversarial_data() -> None:
    rng = np.random.default_rng(7)
    inf = np.inf
    cases = [
        (np.zeros(50), np.zeros(70)),  # identical constants
        (np.zeros(50), np.ones(70)),  # disjoint constants
        (np.array([1.0]), rng.normal(size=500)),  # one row
        (rng.normal(size=500), np.array([0.0])),
        (np.array([-inf, inf, 0.0]), rng.normal(size=400)),  # infinities are values
        (np.full(300, inf), rng.normal(size=400)),
        (np.array([-inf] * 3 + [1.0] * 5), np.array([-inf, 1.0, 1.0, inf])),
        (rng.integers(0, 3, 2_000).astype(float), rng.integers(0, 4, 5_000).astype(float)),
        (np.round(rng.normal(size=20_000), 1), np.round(rng.normal(size=40_000), 1)),
    ]
    for a, b in cases:
        a, b = np.sort(a), np.sort(b)
        assert ks_statistic_sorted(a, b) == _scipy_d(a, b)
        assert ks_statistic_sorted(b, a) == _scipy_d(b, a)


@settings(max_examples=150, deadline=None)
@given(
    a=st.lists(st.integers(-5, 5) | st.floats(-3, 3, allow_nan=False), min_size=1, max_size=400),
    b=st.lists(
        st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=True, width=16),
        min_size=1,
        max_size=400,
    ),
)
def test_statistic_property(a: list[float], b: list[float]) -> None:
    x = np.sort(np.asarray(a, dtype=np.float64))
    y = np.sort(np.asarray(b, dtype=np.float64))
    assert ks_statistic_sorted(x, y) == _scipy_d(x, y)


def test_batched_statistics_with_missing_tails() -> None:
    rng = np.random.default_rng(3)
    refs = [np.sort(rng.normal(size=n)) for n in (20_000, 1, 0, 5_000)]
    rows = np.sort(rng.normal(0.1, 1.0, size=(4, 3_000)), axis=1)
    n_valid = np.array([3_000, 17, 3_000, 0])
    rows[1, 17:] = np.nan
    rows[3, :] = np.nan
    d = ks_statistics(rows, n_valid, refs)
    assert d[0] == _scipy_d(rows[0], refs[0])
    assert d[1] == _scipy_d(rows[1, :17], refs[1])
    assert np.isnan(d[2]) and np.isnan(d[3])  # empty reference / empty window


def test_default_mode_matches_scipy_small_and_large() -> None:
    rng = np.random.default_rng(11)
    for n_w, n_r in ((300, 900), (5_000, 10_000), (5_000, 40_000), (12_000, 3_000)):
        w = np.sort(rng.normal(0.05, 1, n_w))
        r = np.sort(rng.normal(0, 1, n_r))
        d, p = ks_2samp_sorted(w, r)
        ref = ks_2samp(w, r)
        assert d == ref.statistic
        assert p == pytest.approx(ref.pvalue, rel=P_VALUE_REL_TOL, abs=0)


def test_effective_n_rounds_like_scipy() -> None:
    assert effective_n(10_000, 100_000) == np.round(10_000 * 100_000 / 110_000)
    assert effective_n(3, 3) == 2.0  # 1.5 rounds half to even
    assert effective_n(5, 5) == 2.0  # 2.5 -> 2


def _check_sf(n: int, d: float) -> None:
    expected = float(kstwo.sf(d, n))
    got = float(kstwo_sf(d, n)[0])
    if expected >= 1e-300:
        assert got == pytest.approx(expected, rel=P_VALUE_REL_TOL, abs=0), (n, d)
    else:  # documented: below 1e-300 scipy's value is a denormal; ours is tiny too
        assert got < 1e-290


def test_pvalue_regions_against_scipy() -> None:
    """Every branch: small n, Pelz-Good, table, zero tail, d >= 0.5, n > 1e6."""
    rng = np.random.default_rng(5)
    points = [(n, np.sqrt(nx2 / n)) for n in (2, 50, 141, 1_499) for nx2 in (0.3, 3.0, 30.0)]
    for _ in range(60):
        n = int(np.exp(rng.uniform(np.log(1_500), np.log(12_000))))
        nx2 = float(np.exp(rng.uniform(np.log(0.05), np.log(400.0))))
        points.append((n, min(np.sqrt(nx2 / n), 0.999)))
    points += [(9_091, 0.5), (9_091, 0.7), (9_091, 1.0), (9_091, 0.0), (9_091, 1e-6)]
    points += [(1_500, 0.5), (1_499, 0.5), (1_600, 1 - 1 / 1_600), (3_000, 0.99999)]
    points += [(2_000_000, np.sqrt(x / 2_000_000)) for x in (0.5, 3.0, 50.0, 380.0)]
    points += [(150_000, np.sqrt(x / 150_000)) for x in (2.5, 40.0)]
    for n, d in points:
        _check_sf(n, float(d))


def test_pvalue_vectorised_matches_scalar() -> None:
    d = np.array([0.001, 0.01, 0.02, 0.05, 0.2])
    n = np.array([4_762, 4_762, 9_091, 9_091, 3_000])
    out = kstwo_sf(d, n)
    for i in range(d.size):
        assert out[i] == pytest.approx(float(kstwo.sf(d[i], n[i])), rel=P_VALUE_REL_TOL)
