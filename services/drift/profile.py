"""The reference profile: what a window is compared with, computed once per snapshot.

For every numeric feature: quantile bin edges over the reference's finite values
(``n_bins`` bins, tied edges merged, open outer bins), the share of rows in each bin,
the missing share and a sorted sample of the non-missing values for KS (``±inf`` kept:
they are valid extreme values). For every categorical feature: the share of each
category at or above ``min_category_share``, the rest folded into ``"other"``, and the
missing share. Shares are over all rows, so bins plus missing sum to one.

Binning rule (shared with :mod:`services.drift.stats`): with inner edges ``e``, a value
``x`` falls in bin ``searchsorted(e, x, side="right")``, i.e. bins are
``(-inf, e0), [e0, e1), ..., [e_last, +inf)``.

Profiles serialise to ``.npz`` bytes (plain arrays plus a JSON header, never pickle)
and :class:`ProfileCache` keeps them on disk and in memory by snapshot id.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from services.featurespec import FeatureSpec, ModelSpec
from services.files import write_atomic
from streams.contracts import SUMMARY_QUANTILES, Summary

FORMAT_VERSION = 1
OTHER = "__other__"
"""Name of the bucket that takes rare and unseen categories."""


@dataclass(frozen=True, slots=True, eq=False)
class NumericProfile:
    """Reference summary of one numeric feature."""

    name: str
    edges: np.ndarray  # inner bin edges, strictly increasing, len = n_bins - 1
    shares: np.ndarray  # share of all rows per bin, len = len(edges) + 1
    missing_share: float
    sample: np.ndarray  # sorted non-missing values (may hold ±inf), for KS
    n_rows: int

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, NumericProfile)
            and self.name == other.name
            and self.missing_share == other.missing_share
            and self.n_rows == other.n_rows
            and np.array_equal(self.edges, other.edges)
            and np.array_equal(self.shares, other.shares)
            and np.array_equal(self.sample, other.sample)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class CategoricalProfile:
    """Reference summary of one categorical feature (categories as strings)."""

    name: str
    categories: tuple[str, ...]  # kept categories, most frequent first
    shares: tuple[float, ...]  # one per category, then one for OTHER
    missing_share: float
    n_rows: int


@dataclass(frozen=True, slots=True)
class ReferenceProfile:
    """All feature profiles of one reference snapshot."""

    snapshot_id: str
    numeric: tuple[NumericProfile, ...]
    categorical: tuple[CategoricalProfile, ...]
    n_rows: int
    n_bins: int

    def numeric_by_name(self) -> dict[str, NumericProfile]:
        """Numeric profiles keyed by feature name."""
        return {p.name: p for p in self.numeric}

    def categorical_by_name(self) -> dict[str, CategoricalProfile]:
        """Categorical profiles keyed by feature name."""
        return {p.name: p for p in self.categorical}

    def to_bytes(self) -> bytes:
        """Serialise as ``.npz`` bytes: arrays plus a JSON header (no pickle)."""
        header = {
            "format": FORMAT_VERSION,
            "snapshot_id": self.snapshot_id,
            "n_rows": self.n_rows,
            "n_bins": self.n_bins,
            "numeric": [
                {"name": p.name, "missing_share": p.missing_share, "n_rows": p.n_rows}
                for p in self.numeric
            ],
            "categorical": [
                {
                    "name": p.name,
                    "categories": list(p.categories),
                    "shares": list(p.shares),
                    "missing_share": p.missing_share,
                    "n_rows": p.n_rows,
                }
                for p in self.categorical
            ],
        }
        arrays: dict[str, np.ndarray] = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        }
        for i, p in enumerate(self.numeric):
            arrays[f"edges_{i}"] = p.edges
            arrays[f"shares_{i}"] = p.shares
            arrays[f"sample_{i}"] = p.sample
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferenceProfile:
        """Inverse of :meth:`to_bytes`."""
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes().decode())
            if header.get("format") != FORMAT_VERSION:
                raise ValueError(f"unsupported profile format {header.get('format')!r}")
            numeric = tuple(
                NumericProfile(
                    name=h["name"],
                    edges=np.array(npz[f"edges_{i}"]),
                    shares=np.array(npz[f"shares_{i}"]),
                    missing_share=float(h["missing_share"]),
                    sample=np.array(npz[f"sample_{i}"]),
                    n_rows=int(h["n_rows"]),
                )
                for i, h in enumerate(header["numeric"])
            )
        categorical = tuple(
            CategoricalProfile(
                name=h["name"],
                categories=tuple(h["categories"]),
                shares=tuple(float(s) for s in h["shares"]),
                missing_share=float(h["missing_share"]),
                n_rows=int(h["n_rows"]),
            )
            for h in header["categorical"]
        )
        return cls(
            snapshot_id=header["snapshot_id"],
            numeric=numeric,
            categorical=categorical,
            n_rows=int(header["n_rows"]),
            n_bins=int(header["n_bins"]),
        )


def summarize_sorted(ordered: np.ndarray, missing_share: float) -> Summary:
    """Mean, standard deviation and quantiles of sorted present values (``±inf`` kept
    in the sort, left out of the numbers), with the missing share given."""
    lo = int(np.searchsorted(ordered, -np.inf, side="right"))
    hi = int(np.searchsorted(ordered, np.inf, side="left"))
    finite = ordered[lo:hi]
    if finite.size == 0:
        return Summary(levels=list(SUMMARY_QUANTILES), missing_share=float(missing_share))
    # sorted input: linear interpolation between order statistics (numpy's default rule)
    pos = np.asarray(SUMMARY_QUANTILES) * (finite.size - 1)
    below = np.floor(pos).astype(np.int64)
    above = np.minimum(below + 1, finite.size - 1)
    qs = finite[below] + (finite[above] - finite[below]) * (pos - below)
    return Summary(
        mean=float(finite.mean()),
        std=float(finite.std()),
        levels=list(SUMMARY_QUANTILES),
        quantiles=[float(q) for q in qs],
        missing_share=float(missing_share),
    )


def profile_summaries(profile: ReferenceProfile) -> dict[str, Summary]:
    """Per feature, the reference's summary statistics (numeric ones from the profile's
    sorted KS sample, which is the whole reference up to ``ks_sample`` rows)."""
    out = {p.name: summarize_sorted(p.sample, p.missing_share) for p in profile.numeric}
    out.update({p.name: Summary(missing_share=p.missing_share) for p in profile.categorical})
    return out


def category_key(value: object) -> str | None:
    """How a categorical value is named: ``None``/NaN are missing, the rest ``str``."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    return value if isinstance(value, str) else str(value)


def _numeric_profile(
    name: str, values: np.ndarray, n_bins: int, ks_sample: int, rng: np.random.Generator
) -> NumericProfile:
    n = values.shape[0]
    present = values[~np.isnan(values)]
    finite = present[np.isfinite(present)]
    if finite.size:
        qs = np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
        edges = np.unique(qs)
    else:
        edges = np.empty(0)
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=edges.size + 1)
    shares = counts / n if n else np.zeros(edges.size + 1)
    if present.size > ks_sample:
        present = rng.choice(present, size=ks_sample, replace=False)
    return NumericProfile(
        name=name,
        edges=edges.astype(np.float64),
        shares=shares.astype(np.float64),
        missing_share=float((n - int(counts.sum())) / n) if n else 0.0,
        sample=np.sort(present),
        n_rows=n,
    )


def _categorical_profile(name: str, values: pd.Series, min_share: float) -> CategoricalProfile:
    n = len(values)
    keys = [category_key(v) for v in values.tolist()]
    counts: dict[str, int] = {}
    missing = 0
    for k in keys:
        if k is None:
            missing += 1
        else:
            counts[k] = counts.get(k, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = [(k, c) for k, c in ordered if n and c / n >= min_share and k != OTHER]
    other = sum(counts.values()) - sum(c for _, c in kept)
    return CategoricalProfile(
        name=name,
        categories=tuple(k for k, _ in kept),
        shares=tuple([c / n for _, c in kept] + [other / n if n else 0.0]),
        missing_share=missing / n if n else 0.0,
        n_rows=n,
    )


def build_reference_profile(
    frame: pd.DataFrame,
    spec: ModelSpec,
    snapshot_id: str,
    *,
    n_bins: int = 10,
    ks_sample: int = 100_000,
    seed: int = 0,
    min_category_share: float = 0.005,
) -> ReferenceProfile:
    """Profile every feature of ``spec`` in ``frame`` (the reference snapshot)."""
    missing = [f.name for f in spec.features if f.name not in frame.columns]
    if missing:
        raise KeyError(f"reference frame lacks features {missing}")
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    rng = np.random.default_rng(seed)
    numeric = tuple(
        _numeric_profile(f.name, _as_float(frame[f.name]), n_bins, ks_sample, rng)
        for f in spec.numeric
    )
    categorical = tuple(
        _categorical_profile(f.name, frame[f.name], min_category_share) for f in spec.categorical
    )
    return ReferenceProfile(
        snapshot_id=snapshot_id,
        numeric=numeric,
        categorical=categorical,
        n_rows=len(frame),
        n_bins=n_bins,
    )


def _as_float(column: pd.Series) -> np.ndarray:
    """A numeric column as float64 with NaN for missing (pandas NA included)."""
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def infer_spec(frame: pd.DataFrame, model: str = "adhoc") -> ModelSpec:
    """A spec from dtypes alone: numbers and booleans numeric, everything else categorical."""
    feats = []
    for name in frame.columns:
        dtype = frame[name].dtype
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        feats.append(FeatureSpec(name=str(name), kind="numeric" if numeric else "categorical"))
    return ModelSpec(model=model, entity="entity_id", features=tuple(feats))


class ProfileCache:
    """Profiles by snapshot id: in memory, and on disk under ``root_dir``.

    Files are written to a temporary name and renamed, so a reader never sees half a
    profile and two processes building the same snapshot both end up with a whole one.
    """

    def __init__(self, root_dir: str | os.PathLike[str]) -> None:
        self.root = Path(root_dir)
        self._memory: dict[str, ReferenceProfile] = {}
        self._lock = threading.Lock()

    def path_for(self, snapshot_id: str) -> Path:
        """Where the profile of ``snapshot_id`` lives on disk."""
        digest = hashlib.sha256(snapshot_id.encode()).hexdigest()[:32]
        return self.root / f"profile-{digest}.npz"

    def get(self, snapshot_id: str) -> ReferenceProfile | None:
        """The cached profile, or ``None``."""
        with self._lock:
            hit = self._memory.get(snapshot_id)
        if hit is not None:
            return hit
        path = self.path_for(snapshot_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            profile = ReferenceProfile.from_bytes(data)
        except (ValueError, KeyError, OSError, zipfile.BadZipFile):
            return None  # unreadable (foreign or damaged file): a miss, rebuilt and replaced
        if profile.snapshot_id != snapshot_id:  # hash prefix collision: treat as a miss
            return None
        with self._lock:
            self._memory[snapshot_id] = profile
        return profile

    def put(self, profile: ReferenceProfile) -> None:
        """Store ``profile`` atomically on disk and in memory."""
        write_atomic(self.path_for(profile.snapshot_id), profile.to_bytes())
        with self._lock:
            self._memory[profile.snapshot_id] = profile

    def get_or_build(
        self, snapshot_id: str, build_fn: Callable[[], ReferenceProfile]
    ) -> ReferenceProfile:
        """The cached profile of ``snapshot_id``, building and storing it on a miss."""
        hit = self.get(snapshot_id)
        if hit is not None:
            return hit
        profile = build_fn()
        if profile.snapshot_id != snapshot_id:
            raise ValueError(
                f"build_fn made a profile for {profile.snapshot_id!r}, not {snapshot_id!r}"
            )
        self.put(profile)
        return profile
