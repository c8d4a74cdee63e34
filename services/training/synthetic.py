"""A synthetic tabular task (binary, multiclass or regression) with a controllable
covariate shift.

Used by the tests, the fine-tuning benchmark and local demos: numeric features drawn
from a Gaussian whose mean/scale can shift, categorical features from a distribution
whose category shares can shift (and may include categories never seen before), and a
fixed labelling function, so a shift moves the inputs but not the concept. One hidden
score drives every task: binary labels are Bernoulli(sigmoid(score)); multiclass labels
are the most likely class of per-class scores (the hidden score plus a fixed linear
term per class) with Gumbel noise, labelled with the task's class values; regression
labels are ``50 + 10 * score`` plus Gaussian noise (sd 2), in units far from 0 and 1
so a model must learn the target scale.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.featurespec import FeatureSpec, ModelSpec
from services.model.task import Task


def synthetic_spec(n_numeric: int = 8, n_categorical: int = 2, model: str = "synth") -> ModelSpec:
    """The ``ModelSpec`` of ``synthetic_frame``'s columns."""
    feats = [FeatureSpec(f"x{i}", "numeric") for i in range(n_numeric)]
    feats += [FeatureSpec(f"c{i}", "categorical") for i in range(n_categorical)]
    return ModelSpec(model=model, entity="entity_id", features=tuple(feats), label="label")


def synthetic_frame(
    n: int,
    spec: ModelSpec,
    *,
    shift: float = 0.0,
    seed: int = 0,
    start: str = "2026-01-01",
    missing_share: float = 0.0,
    concept_seed: int = 1234,
    task: Task | None = None,
) -> pd.DataFrame:
    """``n`` labelled rows for ``task`` (default binary); ``shift`` moves numeric means
    (and widens them) and tilts category shares towards new categories. The labelling
    rule depends only on ``concept_seed``, so frames with different ``shift`` share the
    same concept."""
    rng = np.random.default_rng(seed)
    concept = np.random.default_rng(concept_seed)
    num = spec.numeric
    cat = spec.categorical
    weights = concept.normal(0, 1.0, size=len(num))
    pair = concept.normal(0, 0.7, size=len(num))
    mean = shift * np.linspace(1.0, 0.3, num=len(num)) if len(num) else np.zeros(0)
    x = rng.normal(mean, 1.0 + 0.3 * shift, size=(n, len(num)))
    logit = x @ weights * 0.6 + np.tanh(x * pair).sum(axis=1) - 0.5 * np.tanh(x[:, 0] * x[:, 1])
    frame = {f.name: x[:, j] for j, f in enumerate(num)}
    n_levels = 12
    for f in cat:
        effects = concept.normal(0, 1.0, size=n_levels + 4)
        probs = np.exp(-np.arange(n_levels + 4) * 0.35 + shift * np.arange(n_levels + 4) * 0.1)
        probs[n_levels:] *= 1.0 if shift > 0 else 0.0  # unseen levels only after a shift
        probs /= probs.sum()
        levels = rng.choice(n_levels + 4, size=n, p=probs)
        logit = logit + effects[levels] * 0.8
        frame[f.name] = np.array([f"{f.name}_v{k}" for k in levels], dtype=object)
    labels = _labels(task or Task(), logit, x, concept, rng)
    out = pd.DataFrame(frame)
    if missing_share > 0 and len(num):
        mask = rng.random((n, len(num))) < missing_share
        for j, f in enumerate(num):
            out.loc[mask[:, j], f.name] = np.nan
    out[spec.label] = labels
    out[spec.entity] = [f"e{seed}-{i}" for i in range(n)]
    out["event_timestamp"] = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(
        np.sort(rng.uniform(0, 86_400, size=n)), unit="s"
    )
    return out


def _labels(task: Task, score: np.ndarray, x: np.ndarray, concept: np.random.Generator,
            rng: np.random.Generator) -> np.ndarray:
    """The task's labels from the hidden ``score`` (see the module docstring)."""
    n = len(score)
    if task.kind == "binary":
        prob = 1.0 / (1.0 + np.exp(-score))
        return (rng.random(n) < prob).astype(np.float32)
    if task.kind == "regression":
        return (50.0 + 10.0 * score + rng.normal(0.0, 2.0, size=n)).astype(np.float64)
    k = len(task.classes)
    slopes = concept.normal(0, 1.0, size=k)
    weights = concept.normal(0, 0.8, size=(x.shape[1], k))
    scores = score[:, None] * slopes[None, :] + x @ weights
    noisy = scores + rng.gumbel(size=(n, k))
    return np.asarray(task.classes, dtype=np.int64)[noisy.argmax(axis=1)]
