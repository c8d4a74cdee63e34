"""Prediction drift: the champion's own outputs in a window against its outputs on its
reference snapshot, with the same statistics as the features.

What is compared, per task:

- ``binary``: P(label == 1), a numeric entry named ``prediction``;
- ``regression``: the predicted value, a numeric entry named ``prediction``;
- ``multiclass``: the predicted class (the arg-max of the class probabilities, named by
  its label value), a categorical entry named ``predicted_class``. The class is what a
  consumer of the model acts on; per-class probabilities would be K entries and K tests
  for one question.

Numeric entries get the reference's quantile bins, PSI and KS; categorical entries PSI
over the reference's classes plus the chi-square test and total variation distance,
exactly as :mod:`services.drift.stats` computes them for features. Whether the entry
drifted is the drift policy applied to this one entry (its own test, no Bonferroni
share with the features). Pure: scores in, a report entry out; loading and scoring
the model are the monitor's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from services.drift.policy import DriftPolicy, evaluate_window
from services.drift.profile import build_reference_profile, profile_summaries, summarize_sorted
from services.drift.stats import WindowStatsEngine
from services.featurespec import FeatureSpec, ModelSpec
from services.model.task import Task
from streams.contracts import FeatureDrift, Summary

PREDICTION = "prediction"
PREDICTED_CLASS = "predicted_class"


def prediction_spec(model: str, task: Task) -> ModelSpec:
    """The one-entry spec compared: ``prediction`` (numeric) or ``predicted_class``."""
    if task.kind == "multiclass":
        feature = FeatureSpec(name=PREDICTED_CLASS, kind="categorical")
    else:
        feature = FeatureSpec(name=PREDICTION, kind="numeric")
    return ModelSpec(model=model, entity="entity_id", features=(feature,))


def prediction_values(task: Task, scores: np.ndarray) -> np.ndarray:
    """What is compared from ``Scorer.predict`` output: the score itself ``[n]``
    (binary, regression; non-finite counts as missing), or the predicted class's label
    as text ``[n]`` (multiclass, from ``[n, K]`` probabilities in ``task.classes``
    order)."""
    scores = np.asarray(scores, dtype=np.float64)
    if task.kind == "multiclass":
        if scores.ndim != 2 or scores.shape[1] != len(task.classes):
            raise ValueError(f"multiclass scores must be [n, {len(task.classes)}], got "
                             f"{scores.shape}")
        labels = np.array([_label(c) for c in task.classes], dtype=object)
        return labels[np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=1)]
    if scores.ndim != 1:
        raise ValueError(f"{task.kind} scores must be [n], got {scores.shape}")
    return np.where(np.isfinite(scores), scores, np.nan)


def _label(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _frame(name: str, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({name: values})


@dataclass(frozen=True)
class PredictionReference:
    """The champion's predictions on its reference snapshot, prepared for comparison."""

    task: Task
    spec: ModelSpec
    engine: WindowStatsEngine
    summary: Summary
    snapshot_id: str
    champion_version: int | None

    @property
    def name(self) -> str:
        """The compared entry's name."""
        return self.spec.features[0].name

    @property
    def kind(self) -> Literal["numeric", "categorical"]:
        """``numeric`` or ``categorical``."""
        return self.spec.features[0].kind


def build_prediction_reference(
    model: str,
    task: Task,
    reference_scores: np.ndarray,
    snapshot_id: str,
    *,
    champion_version: int | None = None,
    n_bins: int = 10,
    ks_method: Literal["auto", "asymp"] = "auto",
) -> PredictionReference:
    """Profile the champion's reference predictions once (per champion and snapshot)."""
    spec = prediction_spec(model, task)
    name = spec.features[0].name
    values = prediction_values(task, reference_scores)
    if values.size == 0:
        raise ValueError("the reference snapshot gave no predictions")
    profile = build_reference_profile(_frame(name, values), spec,
                                      f"{snapshot_id}#predictions-v{champion_version}",
                                      n_bins=n_bins)
    return PredictionReference(
        task=task, spec=spec, engine=WindowStatsEngine(profile, spec, ks_method=ks_method),
        summary=profile_summaries(profile)[name], snapshot_id=snapshot_id,
        champion_version=champion_version,
    )


def prediction_drift(
    reference: PredictionReference, scores: np.ndarray, policy: DriftPolicy,
    *, histograms: bool = True,
) -> FeatureDrift:
    """The ``prediction`` entry of one window's drift report (``scores``: the
    champion's ``Scorer.predict`` output on the window's events)."""
    values = prediction_values(reference.task, scores)
    if values.size == 0:
        raise ValueError("a window needs at least one prediction")
    name = reference.name
    if reference.kind == "numeric":
        stats = reference.engine.compute(values.reshape(-1, 1), {})
        ordered = np.sort(values)
        present = int(np.count_nonzero(~np.isnan(ordered)))
        window_summary = summarize_sorted(ordered[:present], 1 - present / values.size)
    else:
        stats = reference.engine.compute(np.empty((values.size, 0)), {name: values})
        window_summary = Summary(missing_share=0.0)
    verdict = evaluate_window(stats, reference.spec, policy).features[0]
    s = verdict.stats
    return FeatureDrift(
        name=name, kind=s.kind, psi=s.psi, ks_statistic=s.ks_statistic,
        ks_pvalue=s.ks_pvalue, tvd=s.tvd, chi2_pvalue=s.chi2_pvalue,
        missing_share=s.missing_share, drifted=verdict.drifted,
        bins=list(s.bins) if histograms else [],
        reference_shares=list(s.reference_shares) if histograms else [],
        window_shares=list(s.window_shares) if histograms else [],
        reference_summary=reference.summary, window_summary=window_summary,
    )
