"""Feature preprocessing fitted on the training part only, stored as plain JSON.

Numeric features: standardised with the training part's mean and standard deviation
(a constant feature gets std 1). Missing and non-finite values become 0 *after*
scaling, i.e. they are imputed with the training mean, and every numeric feature also
gets a 0/1 missing indicator column. The indicator is always present (not only for
features that happened to have gaps in training), so the input width depends only on
the ``ModelSpec`` and a model keeps working when a feature starts arriving empty.

Categorical features: a vocabulary of the values seen in the training part, sorted,
at indices 1..n; index 0 is the unknown bucket (unseen values and nulls). Values are
compared as strings, so ``3`` and ``"3"`` are the same category.

The fitted state is a JSON-able dict (``to_dict``/``from_dict``); nothing is pickled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from services.featurespec import ModelSpec

FORMAT_VERSION = 1
UNKNOWN_INDEX = 0


class PreprocessingError(ValueError):
    """The data or the stored preprocessing does not match the model spec."""


@dataclass(frozen=True, slots=True)
class NumericStats:
    """Training mean and standard deviation of one numeric feature."""

    name: str
    mean: float
    std: float


@dataclass(frozen=True, slots=True)
class TargetScale:
    """Regression: the training labels' mean and standard deviation.

    The module learns standardised targets (so one learning rate suits any label
    units); scores are mapped back with :meth:`to_label_units`.
    """

    mean: float
    std: float

    @classmethod
    def fit(cls, labels: np.ndarray) -> TargetScale:
        """Mean and std (1 for a constant or single label) of the finite ``labels``."""
        y = np.asarray(labels, dtype=np.float64)
        y = y[np.isfinite(y)]
        mean = float(y.mean()) if y.size else 0.0
        std = float(y.std()) if y.size > 1 else 1.0
        return cls(mean, std if std > 1e-12 else 1.0)

    def standardise(self, labels: np.ndarray) -> np.ndarray:
        """Labels in the module's units."""
        return (np.asarray(labels, dtype=np.float64) - self.mean) / self.std

    def to_label_units(self, outputs: np.ndarray) -> np.ndarray:
        """Module outputs back in the label's units."""
        return np.asarray(outputs, dtype=np.float64) * self.std + self.mean


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Training categories of one categorical feature; index 0 is unknown."""

    name: str
    categories: tuple[str, ...]

    @property
    def cardinality(self) -> int:
        """Embedding rows needed: the categories plus the unknown bucket."""
        return len(self.categories) + 1


@dataclass(frozen=True, slots=True)
class InputSchema:
    """The model's encoded inputs, as a model builder sees them.

    ``numeric`` and ``categorical`` name the features in input order; the numeric input
    holds one value and one missing indicator per numeric feature, and categorical
    feature ``j`` takes ids ``0..cardinalities[j] - 1`` (0 is the unknown bucket).
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    cardinalities: tuple[int, ...]

    @property
    def n_numeric_inputs(self) -> int:
        """Width of the numeric input tensor."""
        return 2 * len(self.numeric)


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """Model inputs: float32 numerics (values then indicators) and int64 category ids."""

    numeric: np.ndarray
    categorical: np.ndarray

    def __len__(self) -> int:
        return int(self.numeric.shape[0])


def _to_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


@dataclass(frozen=True, slots=True)
class Preprocessor:
    """Fitted numeric scaling and categorical vocabularies for one ``ModelSpec``."""

    numeric: tuple[NumericStats, ...]
    categorical: tuple[Vocabulary, ...]
    target: TargetScale | None = None  # regression only

    # -- fitting -------------------------------------------------------------------------
    @classmethod
    def fit(cls, spec: ModelSpec, train: pd.DataFrame) -> Preprocessor:
        """Fit on the training part only (never on validation or serving data)."""
        _require_columns(spec, train)
        stats = []
        for feature in spec.numeric:
            values = pd.to_numeric(train[feature.name], errors="coerce").to_numpy(np.float64)
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if finite.size else 0.0
            std = float(finite.std()) if finite.size > 1 else 1.0
            stats.append(NumericStats(feature.name, mean, std if std > 1e-12 else 1.0))
        vocabs = []
        for feature in spec.categorical:
            seen = {_to_str(v) for v in train[feature.name].tolist()}
            seen.discard(None)
            vocabs.append(Vocabulary(feature.name, tuple(sorted(seen))))  # type: ignore[arg-type]
        return cls(tuple(stats), tuple(vocabs))

    def extend_vocabularies(self, train: pd.DataFrame) -> Preprocessor:
        """Append categories first seen in ``train``; existing indices stay unchanged.

        Used for fine-tuning: the parent's embeddings keep their rows, new categories
        get new rows at the end (initialised by the caller).
        """
        vocabs = []
        for vocab in self.categorical:
            known = set(vocab.categories)
            values = train[vocab.name].tolist() if vocab.name in train else []
            seen = {_to_str(v) for v in values}
            new = sorted(c for c in seen if c is not None and c not in known)
            vocabs.append(Vocabulary(vocab.name, vocab.categories + tuple(new)))
        return Preprocessor(self.numeric, tuple(vocabs), self.target)

    def with_target(self, target: TargetScale | None) -> Preprocessor:
        """The same preprocessing with a regression target scale (or none)."""
        return Preprocessor(self.numeric, self.categorical, target)

    # -- applying ------------------------------------------------------------------------
    @property
    def n_numeric_inputs(self) -> int:
        """Width of the numeric input: one value and one missing indicator per feature."""
        return 2 * len(self.numeric)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Embedding rows per categorical feature (unknown bucket included)."""
        return tuple(v.cardinality for v in self.categorical)

    @property
    def schema(self) -> InputSchema:
        """The encoded inputs this preprocessing produces (what a model is built for)."""
        return InputSchema(
            tuple(s.name for s in self.numeric),
            tuple(v.name for v in self.categorical),
            self.cardinalities,
        )

    def transform(self, frame: pd.DataFrame) -> EncodedFrame:
        """Encode ``frame``; missing columns count as entirely missing values."""
        n = len(frame)
        num = np.zeros((n, self.n_numeric_inputs), dtype=np.float32)
        k = len(self.numeric)
        for j, stats in enumerate(self.numeric):
            if stats.name in frame:
                raw = pd.to_numeric(frame[stats.name], errors="coerce").to_numpy(np.float64)
            else:
                raw = np.full(n, np.nan)
            missing = ~np.isfinite(raw)
            scaled = (raw - stats.mean) / stats.std
            scaled[missing] = 0.0
            num[:, j] = scaled
            num[:, k + j] = missing
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, vocab in enumerate(self.categorical):
            if vocab.name not in frame:
                continue
            index = {c: i + 1 for i, c in enumerate(vocab.categories)}
            cat[:, j] = [index.get(_to_str(v), UNKNOWN_INDEX) for v in frame[vocab.name].tolist()]
        return EncodedFrame(num, cat)

    def check_spec(self, spec: ModelSpec) -> None:
        """Raise ``PreprocessingError`` unless this was fitted for ``spec``'s features."""
        have = ([s.name for s in self.numeric], [v.name for v in self.categorical])
        want = ([f.name for f in spec.numeric], [f.name for f in spec.categorical])
        if have != want:
            raise PreprocessingError(f"preprocessing features {have} do not match spec {want}")

    # -- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (the registry's ``preprocessing.json``)."""
        out: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "missing": "mean-impute+indicator",
            "numeric": [{"name": s.name, "mean": s.mean, "std": s.std} for s in self.numeric],
            "categorical": [
                {"name": v.name, "unknown_index": UNKNOWN_INDEX, "categories": list(v.categories)}
                for v in self.categorical
            ],
        }
        if self.target is not None:
            out["target"] = {"mean": self.target.mean, "std": self.target.std}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        """Inverse of ``to_dict``; rejects other format versions."""
        if data.get("format") != FORMAT_VERSION:
            raise PreprocessingError(f"unsupported preprocessing format {data.get('format')!r}")
        try:
            numeric = tuple(
                NumericStats(str(d["name"]), float(d["mean"]), float(d["std"]))
                for d in data["numeric"]
            )
            categorical = tuple(
                Vocabulary(str(d["name"]), tuple(str(c) for c in d["categories"]))
                for d in data["categorical"]
            )
            target_data = data.get("target")
            target = (None if target_data is None else
                      TargetScale(float(target_data["mean"]), float(target_data["std"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise PreprocessingError(f"malformed preprocessing: {exc}") from exc
        return cls(numeric, categorical, target)


def _require_columns(spec: ModelSpec, frame: pd.DataFrame) -> None:
    missing = [name for name in spec.names if name not in frame]
    if missing:
        raise PreprocessingError(f"training frame lacks feature columns {missing}")
