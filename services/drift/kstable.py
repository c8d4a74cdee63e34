"""Builds the precomputed table behind the fast KS p-value (run once, offline).

scipy's asymptotic two-sample KS p-value is ``kstwo.sf(D, N)``; for ``N > 140`` and
``2.2 <= N*D**2 < 370`` that is ``2 * special.smirnov(N, D)``, an exact sum over about
``N`` terms (milliseconds per call). Its logarithm, with the leading ``-2*N*D**2``
removed, is a very smooth function of ``u = sqrt(N)*D`` and ``h = 1/sqrt(N)``, so a
tensor Chebyshev fit over ``u in [sqrt(2.2), sqrt(370)]`` and
``N in [TABLE_N_MIN, TABLE_N_MAX]`` reproduces it to about 1e-10 in ``log p``.

Regenerate with ``python -m services.drift.kstable`` (about a minute); the result is
written next to this file as ``kstwo_table.npz`` (plain arrays, no pickle).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from numpy.polynomial import chebyshev as cheb

TABLE_PATH = Path(__file__).with_name("kstwo_table.npz")
TABLE_N_MIN = 1500  # u*h < 0.5 over the whole u range, so scipy stays in one branch
TABLE_N_MAX = 200_000
U_MIN, U_MAX = float(np.sqrt(2.2)), float(np.sqrt(370.0))
FIT_U_MAX = float(np.sqrt(340.0))  # scipy's own values are denormal (imprecise) beyond
DEG_U, DEG_H = 28, 14
N_NODES_U, N_NODES_H = 44, 22


def to_unit(v: np.ndarray | float, lo: float, hi: float) -> np.ndarray | float:
    """Map ``[lo, hi]`` onto the Chebyshev interval ``[-1, 1]``."""
    return 2.0 * (v - lo) / (hi - lo) - 1.0


def _residual(n: int, u: float) -> float:
    """``log(2 * smirnov(n, u/sqrt(n))) + 2 u**2`` as scipy computes it."""
    from scipy import special

    p = 2.0 * special.smirnov(n, u / np.sqrt(n))
    return float(np.log(p) + 2.0 * u * u)


def build_table() -> dict[str, np.ndarray]:
    """Sample scipy on Chebyshev-like nodes and least-squares fit the coefficients."""
    h_lo, h_hi = 1.0 / np.sqrt(TABLE_N_MAX), 1.0 / np.sqrt(TABLE_N_MIN)
    nodes_u = np.cos(np.pi * (np.arange(N_NODES_U) + 0.5) / N_NODES_U)
    nodes_h = np.concatenate(
        [np.cos(np.pi * (np.arange(N_NODES_H) + 0.5) / N_NODES_H), [-1.0, 1.0]]
    )
    us = U_MIN + (nodes_u + 1.0) / 2.0 * (U_MAX - U_MIN)
    us = np.concatenate([us[us < FIT_U_MAX], [U_MIN, FIT_U_MAX]])
    ns = np.unique(np.round(1.0 / (h_lo + (nodes_h + 1.0) / 2.0 * (h_hi - h_lo)) ** 2))
    ns = ns.astype(np.int64)
    hh, uu, rr = [], [], []
    for n in ns:
        for u in us:
            hh.append(1.0 / np.sqrt(n))
            uu.append(u)
            rr.append(_residual(int(n), float(u)))
    vander = cheb.chebvander2d(
        to_unit(np.array(hh), h_lo, h_hi), to_unit(np.array(uu), U_MIN, U_MAX), [DEG_H, DEG_U]
    )
    coef, *_ = np.linalg.lstsq(vander, np.array(rr), rcond=None)
    fit_error = float(np.max(np.abs(vander @ coef - np.array(rr))))
    return {
        "coef": coef.reshape(DEG_H + 1, DEG_U + 1),
        "h_range": np.array([h_lo, h_hi]),
        "u_range": np.array([U_MIN, U_MAX]),
        "n_range": np.array([TABLE_N_MIN, TABLE_N_MAX], dtype=np.int64),
        "fit_max_abs_log_error": np.array(fit_error),
    }


def main() -> None:
    """Build and write the table."""
    table = build_table()
    np.savez(TABLE_PATH, **table)
    print(f"wrote {TABLE_PATH} (max |log error| on fit nodes {table['fit_max_abs_log_error']:.2e})")


if __name__ == "__main__":
    main()
    sys.exit(0)
