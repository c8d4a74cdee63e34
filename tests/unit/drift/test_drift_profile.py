"""Reference profiles: bins, shares, KS sample, serialisation and the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.drift.profile import (
    OTHER,
    ProfileCache,
    ReferenceProfile,
    build_reference_profile,
    infer_spec,
)
from services.featurespec import FeatureSpec, ModelSpec

SPEC = ModelSpec(
    model="m",
    entity="e",
    features=(
        FeatureSpec("a", "numeric"),
        FeatureSpec("ties", "numeric"),
        FeatureSpec("k", "categorical", critical=True),
    ),
)


def _frame(n: int = 4_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    a[:40] = np.nan
    a[40:45] = np.inf
    ties = np.where(rng.random(n) < 0.6, 0.0, rng.exponential(size=n))
    k = rng.choice(["x", "y", "z", "tiny"], p=[0.6, 0.3, 0.098, 0.002], size=n).astype(object)
    k[:10] = None
    return pd.DataFrame({"a": a, "ties": ties, "k": k})


def test_numeric_bins_shares_and_sample() -> None:
    frame = _frame()
    p = build_reference_profile(frame, SPEC, "s1", ks_sample=1_000, seed=3)
    a, ties = p.numeric
    assert a.edges.size == 9 and np.all(np.diff(a.edges) > 0)
    # deciles of the finite values (NaN and inf left out), ties merged: np.quantile here
    for profile, column in ((a, "a"), (ties, "ties")):
        values = frame[column].to_numpy()
        finite = values[np.isfinite(values)]
        deciles = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, 11)[1:-1]))
        assert np.array_equal(profile.edges, deciles), column
    assert a.shares.sum() + a.missing_share == pytest.approx(1.0)
    assert a.missing_share == pytest.approx(40 / 4_000)
    assert a.sample.size == 1_000 and np.all(a.sample[1:] >= a.sample[:-1])
    assert not np.isnan(a.sample).any()
    # 60% zeros: the tied quantile edges are merged into one
    assert ties.edges.size < 9 and (ties.edges == 0.0).sum() == 1
    assert ties.shares.sum() == pytest.approx(1.0)
    # infinities fall in the open outer bin
    assert a.shares[-1] * 4_000 >= 5


def test_sample_is_seeded_and_complete_below_cap() -> None:
    frame = _frame()
    p1 = build_reference_profile(frame, SPEC, "s", ks_sample=500, seed=1)
    p2 = build_reference_profile(frame, SPEC, "s", ks_sample=500, seed=1)
    assert np.array_equal(p1.numeric[0].sample, p2.numeric[0].sample)
    full = build_reference_profile(frame, SPEC, "s")
    assert full.numeric[0].sample.size == 4_000 - 40


def test_categorical_other_bucket() -> None:
    p = build_reference_profile(_frame(), SPEC, "s", min_category_share=0.01)
    (k,) = p.categorical
    assert k.categories == ("x", "y", "z")
    assert len(k.shares) == 4  # kept categories then OTHER
    assert sum(k.shares) + k.missing_share == pytest.approx(1.0)
    assert k.missing_share == pytest.approx(10 / 4_000)
    assert OTHER not in k.categories


def test_bytes_round_trip_without_pickle() -> None:
    p = build_reference_profile(_frame(), SPEC, "snap/1:ü")
    data = p.to_bytes()
    assert b"pickle" not in data
    q = ReferenceProfile.from_bytes(data)
    assert q == p


def test_cache_round_trip(tmp_path: Path) -> None:
    calls = []

    def build() -> ReferenceProfile:
        calls.append(1)
        return build_reference_profile(_frame(), SPEC, "snap-1")

    cache = ProfileCache(tmp_path / "profiles")
    first = cache.get_or_build("snap-1", build)
    assert cache.get_or_build("snap-1", build) is first  # memory hit
    fresh = ProfileCache(tmp_path / "profiles")  # e.g. a restarted process
    assert fresh.get_or_build("snap-1", build) == first  # disk hit
    assert len(calls) == 1
    assert [p.name for p in (tmp_path / "profiles").iterdir()] == [
        cache.path_for("snap-1").name
    ]  # no temporary files left behind
    assert fresh.get("other") is None


def test_cache_rebuilds_damaged_file(tmp_path: Path) -> None:
    cache = ProfileCache(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    cache.path_for("snap").write_bytes(b"not a profile")
    built = cache.get_or_build("snap", lambda: build_reference_profile(_frame(), SPEC, "snap"))
    assert ProfileCache(tmp_path).get("snap") == built


def test_cache_rejects_wrong_snapshot(tmp_path: Path) -> None:
    cache = ProfileCache(tmp_path)
    with pytest.raises(ValueError):
        cache.get_or_build("a", lambda: build_reference_profile(_frame(), SPEC, "b"))


def test_missing_feature_and_infer_spec() -> None:
    with pytest.raises(KeyError):
        build_reference_profile(_frame().drop(columns=["k"]), SPEC, "s")
    spec = infer_spec(
        pd.DataFrame({"n": [1, 2], "f": [0.5, 1.0], "s": ["a", "b"], "b": [True, False]})
    )
    assert [(f.name, f.kind) for f in spec.features] == [
        ("n", "numeric"),
        ("f", "numeric"),
        ("s", "categorical"),
        ("b", "categorical"),
    ]
