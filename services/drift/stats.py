"""Per-window drift statistics of every feature against a reference profile.

PSI (population stability index), per feature, over the reference's bins plus a bin
for missing values::

    PSI = sum_i (w_i - r_i) * ln(w_i / r_i),   w_i, r_i = max(share_i, epsilon)

with shares over all rows (bins plus missing sum to one) and ``epsilon = 1e-4``
smoothing empty bins. Numeric bins are the reference's quantile bins (see
:mod:`services.drift.profile`); categorical bins are the reference's kept categories,
``"other"`` (rare and unseen categories) and missing.

For categorical features, the analogue of KS: the total variation distance (TVD, the
largest difference in probability of any set of categories; for two categories it is
the KS statistic) and the p-value of a chi-square homogeneity test of the window's
counts against the reference's (kept categories, ``"other"``, missing).

KS per numeric feature over the non-missing values (NaN is missing, ``±inf`` are
values), statistic and p-value as ``scipy.stats.ks_2samp`` gives them (see
:mod:`services.drift.ks`); ``None`` when the window or the reference has no value.

The work is vectorised: the window matrix is sorted once column-wise, bin counts come
from a searchsorted of the few bin edges into each sorted column, and all p-values
are computed in one call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np

from services.drift.ks import EXACT_MAX_N, ks_2samp_sorted, ks_pvalues, ks_statistics
from services.drift.profile import (
    OTHER,
    CategoricalProfile,
    ReferenceProfile,
    category_key,
)
from services.featurespec import FeatureKind, ModelSpec

PSI_EPSILON = 1e-4


@dataclass(frozen=True, slots=True)
class FeatureStats:
    """Drift statistics of one feature in one window."""

    name: str
    kind: FeatureKind
    psi: float
    ks_statistic: float | None
    ks_pvalue: float | None
    missing_share: float
    tvd: float | None = None  # categorical: total variation distance to the reference
    chi2_pvalue: float | None = None  # categorical: chi-square homogeneity test p-value
    # the PSI histogram: bin labels (numeric ranges or categories, then "other" for
    # categorical features, then "missing"), reference and window share per bin
    bins: tuple[str, ...] = ()
    reference_shares: tuple[float, ...] = ()
    window_shares: tuple[float, ...] = ()


MISSING_LABEL = "missing"
OTHER_LABEL = "other"


def numeric_bin_labels(edges: np.ndarray) -> tuple[str, ...]:
    """Labels of the bins ``(-inf, e0), [e0, e1), ..., [e_last, +inf)`` and missing."""
    if edges.size == 0:
        return ("(-inf, +inf)", MISSING_LABEL)
    e = [f"{v:.6g}" for v in edges]
    inner = [f"[{a}, {b})" for a, b in pairwise(e)]
    return (f"(-inf, {e[0]})", *inner, f"[{e[-1]}, +inf)", MISSING_LABEL)


def psi(reference: np.ndarray, window: np.ndarray, epsilon: float = PSI_EPSILON) -> np.ndarray:
    """PSI along the last axis of two share arrays (zeros smoothed to ``epsilon``)."""
    r = np.maximum(reference, epsilon)
    w = np.maximum(window, epsilon)
    return np.sum((w - r) * np.log(w / r), axis=-1)


def chi2_homogeneity_pvalue(ref_counts: np.ndarray, win_counts: np.ndarray) -> float:
    """Pearson chi-square test that two count vectors share one distribution.

    Slots empty in both samples are dropped; the same numbers as
    ``scipy.stats.chi2_contingency(np.vstack([ref, win]), correction=False)``.
    """
    from scipy.stats import chi2

    table = np.vstack([ref_counts, win_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    dof = table.shape[1] - 1
    rows = table.sum(axis=1)
    if dof < 1 or np.any(rows == 0):
        return 1.0
    expected = np.outer(rows, table.sum(axis=0)) / rows.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    return float(chi2.sf(stat, dof))


class WindowStatsEngine:
    """Computes :class:`FeatureStats` for windows of one model against one profile.

    Everything that depends only on the reference (padded share matrix, edges, KS
    samples, category lookup) is prepared once here.
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        spec: ModelSpec,
        epsilon: float = PSI_EPSILON,
        ks_method: Literal["auto", "asymp"] = "auto",
    ) -> None:
        """``ks_method="auto"`` is scipy's default: its exact p-value when both samples
        hold at most 10,000 values (about 50 ms per feature at those sizes), else the
        asymptotic one; ``"asymp"`` always takes the fast asymptotic path."""
        if ks_method not in ("auto", "asymp"):
            raise ValueError(f"ks_method must be 'auto' or 'asymp', not {ks_method!r}")
        self.ks_method = ks_method
        self.spec = spec
        self.profile = profile
        self.epsilon = epsilon
        by_num = profile.numeric_by_name()
        by_cat = profile.categorical_by_name()
        try:
            self._num = [by_num[f.name] for f in spec.numeric]
            self._cat = [by_cat[f.name] for f in spec.categorical]
        except KeyError as exc:
            raise KeyError(f"profile {profile.snapshot_id!r} lacks feature {exc}") from None
        width = max((p.edges.size + 1 for p in self._num), default=1) + 1
        self._width = width
        ref = np.zeros((len(self._num), width))
        for j, p in enumerate(self._num):
            ref[j, : p.shares.size] = p.shares
            ref[j, -1] = p.missing_share
        self._ref_num = ref
        self._samples = [p.sample for p in self._num]
        self._num_labels = [numeric_bin_labels(p.edges) for p in self._num]
        self._num_ref_shares = [(*p.shares.tolist(), p.missing_share) for p in self._num]
        self._n_ref = np.array([p.sample.size for p in self._num], dtype=np.int64)
        self._cat_index: list[dict[str, int]] = [
            {c: i for i, c in enumerate(p.categories)} for p in self._cat
        ]
        self._cat_ref: list[np.ndarray] = [
            np.array([*p.shares, p.missing_share]) for p in self._cat
        ]

    def compute(
        self,
        numeric: np.ndarray,
        categorical: Mapping[str, Sequence[object] | np.ndarray] | None = None,
    ) -> list[FeatureStats]:
        """Statistics of every feature of the spec, in spec order.

        ``numeric`` is ``(n_rows, n_numeric)`` float64 in ``spec.numeric`` order (NaN
        missing); ``categorical`` maps each categorical feature to its ``n_rows`` values
        (``None`` missing).
        """
        numeric = np.asarray(numeric, dtype=np.float64)
        if numeric.ndim != 2 or numeric.shape[1] != len(self._num):
            raise ValueError(f"numeric must be (n_rows, {len(self._num)}), got {numeric.shape}")
        n_rows = numeric.shape[0]
        categorical = categorical or {}
        if n_rows == 0 and not self._num:
            n_rows = len(next(iter(categorical.values()), ()))
        if n_rows == 0:
            raise ValueError("a window needs at least one row")
        out: dict[str, FeatureStats] = {}
        out.update(self._numeric_stats(numeric))
        for p, index, ref in zip(self._cat, self._cat_index, self._cat_ref, strict=True):
            values = categorical.get(p.name)
            if values is None or len(values) != n_rows:
                raise ValueError(f"categorical feature {p.name!r} needs {n_rows} values")
            out[p.name] = self._categorical_stats(p, index, ref, values, n_rows)
        return [out[name] for name in self.spec.names]

    def _numeric_stats(self, numeric: np.ndarray) -> dict[str, FeatureStats]:
        if not self._num:
            return {}
        n_rows, n_feat = numeric.shape
        ordered = np.sort(numeric.T, axis=1)  # one contiguous row per feature, NaN last
        n_valid = n_rows - np.count_nonzero(np.isnan(ordered), axis=1)
        win = np.zeros((n_feat, self._width))
        for j, p in enumerate(self._num):
            nv = int(n_valid[j])
            below = np.searchsorted(ordered[j, :nv], p.edges, side="left")  # x < e_i
            k = below.size
            if k:
                win[j, 0] = below[0]
                win[j, 1:k] = below[1:] - below[:-1]
                win[j, k] = nv - below[-1]
            else:
                win[j, 0] = nv
        win[:, :-1] /= n_rows
        win[:, -1] = (n_rows - n_valid) / n_rows
        psis = psi(self._ref_num, win, self.epsilon)
        d = np.full(n_feat, np.nan)
        pvals = np.full(n_feat, np.nan)
        n_ref = self._n_ref
        has_data = (n_valid > 0) & (n_ref > 0)
        exact = has_data & (np.maximum(n_valid, n_ref) <= EXACT_MAX_N)
        if self.ks_method == "asymp":
            exact[:] = False
        asymp = has_data & ~exact
        if asymp.any():
            rows = np.flatnonzero(asymp)
            d[rows] = ks_statistics(ordered[rows], n_valid[rows], [self._samples[j] for j in rows])
            pvals[rows] = ks_pvalues(d[rows], n_valid[rows], n_ref[rows])
        for j in np.flatnonzero(exact):  # small samples: scipy's exact method, as scipy does
            d[j], pvals[j] = ks_2samp_sorted(ordered[j, : n_valid[j]], self._samples[j])
        win_list = win.tolist()
        return {
            p.name: FeatureStats(
                name=p.name,
                kind="numeric",
                psi=float(psis[j]),
                ks_statistic=None if np.isnan(d[j]) else float(d[j]),
                ks_pvalue=None if np.isnan(d[j]) else float(pvals[j]),
                missing_share=float(win[j, -1]),
                bins=self._num_labels[j],
                reference_shares=self._num_ref_shares[j],
                window_shares=(*win_list[j][: p.edges.size + 1], win_list[j][-1]),
            )
            for j, p in enumerate(self._num)
        }

    def _categorical_stats(
        self,
        p: CategoricalProfile,
        index: dict[str, int],
        ref: np.ndarray,
        values: Sequence[object] | np.ndarray,
        n_rows: int,
    ) -> FeatureStats:
        counts = np.zeros(ref.size)
        other = len(p.categories)
        missing = other + 1
        raw = Counter(values.tolist() if isinstance(values, np.ndarray) else values)
        for value, c in raw.items():
            key = category_key(value)
            slot = missing if key is None else index.get(key, other)
            counts[slot] += c
        win = counts / n_rows
        return FeatureStats(
            name=p.name,
            kind="categorical",
            psi=float(psi(ref, win, self.epsilon)),
            ks_statistic=None,
            ks_pvalue=None,
            missing_share=float(win[missing]),
            tvd=float(0.5 * np.abs(win - ref).sum()),
            chi2_pvalue=chi2_homogeneity_pvalue(ref * p.n_rows, counts),
            bins=(*p.categories, OTHER_LABEL, MISSING_LABEL),
            reference_shares=tuple(ref.tolist()),
            window_shares=tuple(win.tolist()),
        )


def window_stats(
    profile: ReferenceProfile,
    spec: ModelSpec,
    numeric: np.ndarray,
    categorical: Mapping[str, Sequence[object] | np.ndarray] | None = None,
    *,
    epsilon: float = PSI_EPSILON,
    ks_method: Literal["auto", "asymp"] = "auto",
) -> list[FeatureStats]:
    """One-off convenience around :class:`WindowStatsEngine` (prepare and compute)."""
    return WindowStatsEngine(profile, spec, epsilon, ks_method).compute(numeric, categorical)


__all__ = ["OTHER", "PSI_EPSILON", "FeatureStats", "WindowStatsEngine", "psi", "window_stats"]
