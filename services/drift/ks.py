"""Fast two-sample Kolmogorov-Smirnov test against a presorted reference sample.

The statistic is computed from the same integer counts that ``scipy.stats.ks_2samp``
uses, so ``D`` is bit-for-bit the number scipy returns. The p-value follows scipy's
default (``method='auto'``):

- both samples at most 10,000 values: scipy's exact method (we call scipy; it is cheap
  at those sizes);
- otherwise scipy's asymptotic p-value ``kstwo.sf(D, round(n*m/(n+m)))``, which we
  evaluate vectorised with the same branches as ``scipy.stats._ksstats._kolmogn``:

  * ``N*D**2 >= 370`` (or ``D >= 0.5`` with ``N >= 1,500``): scipy returns ``0.0``;
    so do we;
  * ``2.2 <= N*D**2 < 370``: scipy sums ``2*smirnov(N, D)`` exactly (about ``N``
    terms, milliseconds per call); we read a precomputed table (below);
  * ``N*D**2 < 2.2``: scipy's Pelz-Good series (Python, about 0.3 ms per call); we run
    the same series vectorised over all features;
  * ``N > 1e6`` in the smirnov region: the closed form scipy's smirnov switches to;
  * anything else (``N <= 140``, ``D >= 0.5``, the Durbin-matrix corner, ``N`` outside
    the table): scipy itself.

  The table (``kstwo_table.npz``, built by :mod:`services.drift.kstable`) is a tensor
  Chebyshev fit of ``log p + 2*N*D**2`` in ``sqrt(N)*D`` and ``1/sqrt(N)`` for
  ``1,500 <= N <= 200,000``; outside that range scipy is called.

Error bound (asserted by the unit tests): wherever scipy returns ``p >= 1e-300`` our
p-value is within ``P_VALUE_REL_TOL = 1e-8`` relative of scipy's (measured: about
3e-11 on the fit nodes). Where scipy's ``p < 1e-300`` its own value is a denormal with
few significant digits; we return the table's value (``exp`` of the fitted ``log p``,
still accurate in ``log p``), which can differ from scipy's in relative terms but both
are below 1e-300; for ``N*D**2 >= 370`` both are exactly ``0.0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import chebyshev as cheb

from services.drift.kstable import TABLE_PATH, to_unit

P_VALUE_REL_TOL = 1e-8
"""Documented relative error of :func:`kstwo_sf` against scipy where ``p >= 1e-300``."""

EXACT_MAX_N = 10_000  # scipy's MAX_AUTO_N: 'auto' is exact when both sizes are <= this
_SMIRNOV_MAX_COMPUTE_N = 1_000_000  # above this scipy's smirnov uses a closed form

_PI2 = math.pi**2
_PI4 = math.pi**4
_PI6 = math.pi**6
_SQRT2PI = math.sqrt(2 * math.pi)
_SQRT3 = math.sqrt(3)


@dataclass(frozen=True, slots=True)
class _Table:
    coef: np.ndarray
    h_lo: float
    h_hi: float
    u_lo: float
    u_hi: float
    n_lo: int
    n_hi: int


def _load_table() -> _Table:
    with np.load(TABLE_PATH, allow_pickle=False) as data:
        h = data["h_range"]
        u = data["u_range"]
        n = data["n_range"]
        return _Table(
            coef=np.array(data["coef"]),
            h_lo=float(h[0]),
            h_hi=float(h[1]),
            u_lo=float(u[0]),
            u_hi=float(u[1]),
            n_lo=int(n[0]),
            n_hi=int(n[1]),
        )


_TABLE = _load_table()


def effective_n(n1: int | np.ndarray, n2: int | np.ndarray) -> np.ndarray:
    """``round(n1*n2/(n1+n2))`` exactly as scipy rounds it (half to even)."""
    a = np.asarray(n1, dtype=np.float64)
    b = np.asarray(n2, dtype=np.float64)
    m = np.maximum(a, b)
    n = np.minimum(a, b)
    return np.round(m * n / (m + n))


def _pelz_good_sf(n: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``1 - PelzGood_cdf(n, x)``: scipy's series, vectorised over features."""
    z = np.sqrt(n) * x
    z2, z3, z4, z6 = z**2, z**3, z**4, z**6
    qlog = -_PI2 / 8 / z2
    out = np.ones_like(z)  # qlog < -708: cdf is 0, sf 1
    ok = qlog >= -708
    if not ok.any():
        return out
    z, z2, z3, z4, z6, n, qlog = (a[ok] for a in (z, z2, z3, z4, z6, n, qlog))
    q = np.exp(qlog)
    k1a, k1b = -z2, _PI2 / 4
    k2a = 6 * z6 + 2 * z4
    k2b = (2 * z4 - 5 * z2) * _PI2 / 4
    k2c = _PI4 * (1 - 2 * z2) / 16
    k3d = _PI6 * (5 - 30 * z2) / 64
    k3c = _PI4 * (-60 * z2 + 212 * z4) / 16
    k3b = _PI2 * (135 * z4 - 96 * z6) / 4
    k3a = -30 * z6 - 90 * z**8
    maxk = np.ceil(16 * z / np.pi).astype(np.int64)
    acc = np.zeros((4, z.size))
    for k in range(int(maxk.max()), 0, -1):
        active = k <= maxk  # scipy starts each series at its own maxk
        m = 2 * k - 1
        m2, m4, m6 = m**2, m**4, m**6
        qpower = np.power(q, 8 * k)
        coeffs = np.stack(
            [
                np.ones_like(z),
                k1a + k1b * m2,
                k2a + k2b * m2 + k2c * m4,
                k3a + k3b * m2 + k3c * m4 + k3d * m6,
            ]
        )
        acc = np.where(active, acc * qpower + coeffs, acc)
    acc *= q
    acc *= _SQRT2PI
    acc /= np.stack([z, 6 * z4, 72 * z**7, 6480 * z**10])
    q2 = np.exp(-_PI2 / 2 / z2)
    k2extra = np.zeros_like(z)
    k3extra = np.zeros_like(z)
    sqrt3z = _SQRT3 * z
    for k in range(int(maxk.max()), 0, -1):
        active = k <= maxk
        qp = q2 ** (k * k)
        kspi = np.pi * k
        k2extra = np.where(active, k2extra + (k * k) * qp, k2extra)
        k3extra = np.where(
            active, k3extra + (sqrt3z + kspi) * (sqrt3z - kspi) * (k * k) * qp, k3extra
        )
    acc[2] += k2extra * (_PI2 * _SQRT2PI / (-36 * z3))
    acc[3] += k3extra * (_PI2 * _SQRT2PI / (216 * z6))
    acc /= np.stack([np.ones_like(n), n**0.5, n, n**1.5])
    cdf = ((acc[0] + acc[1]) + acc[2]) + acc[3]  # scipy: PelzGood(cdf=True), sf = 1 - cdf
    out[ok] = np.clip(1.0 - cdf, 0.0, 1.0)
    return out


def _table_sf(n: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``2*smirnov(n, x)`` from the Chebyshev table (``2.2 <= n x**2 < 370``)."""
    u = np.sqrt(n) * x
    h = 1.0 / np.sqrt(n)
    t = _TABLE
    resid = cheb.chebval2d(to_unit(h, t.h_lo, t.h_hi), to_unit(u, t.u_lo, t.u_hi), t.coef)
    return np.clip(np.exp(resid - 2.0 * u * u), 0.0, 1.0)


def _closed_form_sf(n: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``2*smirnov(n, x)`` for ``n > 1e6``, the closed form scipy's smirnov switches to."""
    logp = -((6.0 * n * x + 1.0) ** 2) / 18.0 / n
    sf = np.where(logp < -math.log(2), np.exp(logp), 1.0 - (-np.expm1(logp)))
    return np.clip(2.0 * sf, 0.0, 1.0)


def _scipy_sf(d: float, n: float) -> float:
    from scipy.stats import kstwo

    return float(kstwo.sf(d, n))


def kstwo_sf(d: np.ndarray | float, n: np.ndarray | float) -> np.ndarray:
    """scipy's ``kstwo.sf(d, n)`` for integer ``n``, vectorised, table-accelerated."""
    d = np.atleast_1d(np.asarray(d, dtype=np.float64))
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), d.shape).copy()
    out = np.full(d.shape, np.nan)
    t = n * d
    nx2 = t * d
    big = n > 140
    mid = big & (t > 1.0) & (t < n - 1) & (d < 0.5) & (d > 0.0)
    zero = mid & (nx2 >= 370.0)
    # D >= 0.5 with N >= 1,500: N*D**2 >= 375, scipy's exact sums underflow to 0.0
    zero |= (n >= _TABLE.n_lo) & (d >= 0.5) & (d < 1.0)
    smirnov_region = mid & (nx2 >= 2.2) & (nx2 < 370.0)
    table = smirnov_region & (n >= _TABLE.n_lo) & (n <= _TABLE.n_hi)
    closed = smirnov_region & (n > _SMIRNOV_MAX_COMPUTE_N)
    dmtw = (n <= 100_000) & (n * d**1.5 <= 1.4)
    pelz = mid & (nx2 < 2.2) & ~dmtw
    out[d >= 1.0] = 0.0
    out[d <= 0.0] = 1.0
    out[zero] = 0.0
    if table.any():
        out[table] = _table_sf(n[table], d[table])
    if closed.any():
        out[closed] = _closed_form_sf(n[closed], d[closed])
    if pelz.any():
        out[pelz] = _pelz_good_sf(n[pelz], d[pelz])
    rest = np.isnan(out) & ~np.isnan(d) & ~np.isnan(n)
    for i in np.flatnonzero(rest):
        out[i] = _scipy_sf(float(d[i]), float(n[i]))
    return out


_STRIDES = (24, 4, 1)  # coarse-to-fine sampling of window positions, see below


def _ranges(lo: np.ndarray, hi: np.ndarray, step: int) -> np.ndarray:
    """Concatenation of ``arange(lo_i, hi_i, step)`` (``lo_i < hi_i``)."""
    lengths = (hi - lo + step - 1) // step
    starts = np.cumsum(lengths) - lengths
    flat = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)
    return np.repeat(lo, lengths) + flat * step


def ks_statistics(
    window_rows: np.ndarray, n_valid: np.ndarray, refs: Sequence[np.ndarray]
) -> np.ndarray:
    """Two-sample KS ``D`` per feature, identical to scipy's (asymptotic mode).

    ``window_rows`` holds one sorted window sample per row, its first ``n_valid[j]``
    values valid (NaN after them); ``refs[j]`` is feature ``j``'s sorted reference
    sample. ``D`` is NaN where either side is empty.

    The empirical CDF difference is a step function that only moves at data points;
    its extremes are reached right at a window value (counts ``<= v``) or just before
    one (counts ``< v``, realised at the largest data point below ``v``). Both are
    integer counts, so the float ``k1/n1 - k2/n2`` is exactly the one scipy evaluates.

    Searching every window value in a large reference is the cost, so the search is
    pruned exactly: counts are taken at every 24th window position first; between two
    evaluated positions both CDFs are monotone, which bounds ``|F_w - F_r|`` for every
    point in between (float division and subtraction round monotonically, so the bound
    holds in floats too); only segments whose bound reaches the best value found so
    far are sampled again, at every 4th and then at every position.
    """
    n_feat, width = window_rows.shape
    n_valid = np.asarray(n_valid, dtype=np.int64)
    n_ref = np.array([r.shape[0] for r in refs], dtype=np.int64)
    best = np.full(n_feat, np.nan)
    feats = np.flatnonzero((n_valid > 0) & (n_ref > 0))
    if not feats.size:
        return best
    best[feats] = 0.0
    # rows whose valid values are all distinct: "< v" is the position, "<= v" one more
    same = window_rows[:, 1:] == window_rows[:, :-1]  # NaN == NaN is False
    tied = same.any(axis=1)
    nw_all = n_valid.astype(np.float64)
    nr_all = n_ref.astype(np.float64)
    # first level: every 24th valid position of every feature, and its last one
    new_feat = np.concatenate(
        [np.full(len(range(0, n_valid[j], _STRIDES[0])) + 1, j) for j in feats]
    )
    new_pos = np.concatenate(
        [np.append(np.arange(0, n_valid[j], _STRIDES[0]), n_valid[j] - 1) for j in feats]
    )
    key = pos = feat = wl = wr = rl = rr = np.empty(0, dtype=np.int64)
    for next_stride in (*_STRIDES[1:], 0):
        bounds = np.searchsorted(new_feat, np.arange(n_feat + 1))
        parts = []
        nwl = new_pos.copy()
        nwr = new_pos + 1
        for j in np.flatnonzero(bounds[1:] > bounds[:-1]):
            lo, hi = bounds[j], bounds[j + 1]
            v = window_rows[j, new_pos[lo:hi]]
            ref = refs[j]
            left = np.searchsorted(ref, v, side="left")
            right = left
            hit = ref.take(left, mode="clip") == v  # "<= v" differs only where v is in ref
            if hit.any():
                right = left.copy()
                right[hit] = np.searchsorted(ref, v[hit], side="right")
            parts.append(left)
            parts.append(right)
            if tied[j]:
                row = window_rows[j, : n_valid[j]]
                nwl[lo:hi] = np.searchsorted(row, v, side="left")
                nwr[lo:hi] = np.searchsorted(row, v, side="right")
        nrl = np.concatenate(parts[0::2])
        nrr = np.concatenate(parts[1::2])
        nw, nr = nw_all[new_feat], nr_all[new_feat]
        vals = np.maximum(np.abs(nwr / nw - nrr / nr), np.abs(nwl / nw - nrl / nr))
        starts = np.flatnonzero(np.r_[True, new_feat[1:] != new_feat[:-1]])
        np.maximum.at(best, new_feat[starts], np.maximum.reduceat(vals, starts))
        if next_stride == 0:
            break
        key = np.concatenate([key, new_feat * (width + 1) + new_pos])
        order = np.argsort(key, kind="stable")
        key = key[order]
        feat, pos, wl, wr, rl, rr = (
            np.concatenate(ab)[order]
            for ab in (
                (feat, new_feat),
                (pos, new_pos),
                (wl, nwl),
                (wr, nwr),
                (rl, nrl),
                (rr, nrr),
            )
        )
        nw, nr = nw_all[feat[1:]], nr_all[feat[1:]]
        upper = np.maximum(wr[1:] / nw - rl[:-1] / nr, rr[1:] / nr - wl[:-1] / nw)
        seg = np.flatnonzero(
            (feat[1:] == feat[:-1]) & (pos[1:] - pos[:-1] > 1) & (upper >= best[feat[1:]])
        )
        if not seg.size:
            break
        lo, hi = pos[seg] + 1, pos[seg + 1]
        new_pos = _ranges(lo, hi, next_stride)
        new_feat = np.repeat(feat[seg], (hi - lo + next_stride - 1) // next_stride)
    return np.minimum(best, 1.0)


def ks_statistic_sorted(window_sorted: np.ndarray, ref_sorted: np.ndarray) -> float:
    """KS ``D`` of one sorted, NaN-free window against one sorted reference sample."""
    if window_sorted.shape[0] == 0 or ref_sorted.shape[0] == 0:
        raise ValueError("KS needs at least one value in each sample")
    rows = np.asarray(window_sorted, dtype=np.float64)[None, :]
    return float(ks_statistics(rows, np.array([rows.shape[1]]), [ref_sorted])[0])


def uses_exact(n_window: int, n_ref: int) -> bool:
    """Whether scipy's ``method='auto'`` picks the exact distribution for these sizes."""
    return max(n_window, n_ref) <= EXACT_MAX_N


def ks_pvalues(d: np.ndarray, n_window: np.ndarray, n_ref: np.ndarray | int) -> np.ndarray:
    """scipy's asymptotic two-sided p-values for statistics ``d`` (vectorised)."""
    return kstwo_sf(d, effective_n(n_window, n_ref))


def ks_2samp_sorted(window_sorted: np.ndarray, ref_sorted: np.ndarray) -> tuple[float, float]:
    """``(D, p)`` as ``scipy.stats.ks_2samp(window, ref)`` returns them by default.

    Small samples (both at most 10,000 values) go to scipy itself, whose exact method
    also rounds ``D`` to a multiple of ``1/lcm(n1, n2)``.
    """
    n_w, n_r = window_sorted.shape[0], ref_sorted.shape[0]
    if uses_exact(n_w, n_r):
        from scipy.stats import ks_2samp

        res = ks_2samp(window_sorted, ref_sorted)
        return float(res.statistic), float(res.pvalue)
    d = ks_statistic_sorted(window_sorted, ref_sorted)
    return d, float(ks_pvalues(np.array([d]), np.array([n_w]), n_r)[0])
