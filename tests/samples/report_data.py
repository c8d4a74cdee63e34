"""A deterministic, synthetic :class:`ReportData`: a model whose ``income`` and ``country``
drift half-way, one retrain request, a promoted candidate and another one in shadow.

``task`` picks the model: ``binary`` (churn, log loss), ``regression`` (demand, squared
error) or ``multiclass`` (segment, cross entropy); each report then carries a
prediction-drift entry of that task's form, which moves with the drift. Wall-clock
times (reports' ``created_at``, requests, verdicts, promotions, manifests) run
``wall_offset`` after the event times, as in a replay of recorded events.

Used by the report tests (rendering, collection from the topics, the browser check).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import msgspec

from services.registry.manifest import Lineage, Manifest
from services.report.render import ReportData, Thresholds
from streams.contracts import (
    SUMMARY_QUANTILES,
    DriftReport,
    FeatureDrift,
    ModelCandidate,
    ModelPromotion,
    PairedTest,
    RetrainRequest,
    ShadowVerdict,
    Summary,
    WindowBounds,
)

T0 = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
SHA = "ab" * 32
MODELS = {"binary": "churn", "regression": "demand", "multiclass": "segment"}
LOSSES = {"binary": "log_loss", "regression": "squared_error", "multiclass": "cross_entropy"}


def _normalise(weights: Sequence[float]) -> list[float]:
    total = sum(weights)
    return [w / total for w in weights]


def _numeric(name: str, shift: float, rng: random.Random, critical: bool = False) -> FeatureDrift:
    edges = [round(-2.0 + 0.5 * i, 2) for i in range(9)]
    inner = (f"[{a:g}, {b:g})" for a, b in pairwise(edges))
    bins = [f"(-inf, {edges[0]:g})", *inner, f"[{edges[-1]:g}, +inf)", "missing"]
    centres = [-2.25 + 0.5 * i for i in range(10)]
    reference = _normalise([*(math.exp(-(c**2) / 4.0) for c in centres), 0.04])
    window = _normalise([
        *(math.exp(-((c - shift) ** 2) / 4.0) * (1 + 0.08 * rng.random()) for c in centres),
        0.04 * (1 + 0.3 * rng.random()),
    ])
    psi = sum((w - r) * math.log(max(w, 1e-4) / r) for w, r in zip(window, reference,
                                                                     strict=True))
    ks = min(0.05 + 0.22 * abs(shift) + 0.02 * rng.random(), 1.0)
    return FeatureDrift(
        name=name, kind="numeric", psi=psi, ks_statistic=ks,
        ks_pvalue=10 ** (-40 * ks), missing_share=window[-1], drifted=psi >= 0.2 or ks >= 0.1,
        critical=critical, bins=bins, reference_shares=reference, window_shares=window,
        reference_summary=_summary(0.0, reference[-1]),
        window_summary=_summary(shift, window[-1], 1 + 0.05 * rng.random()),
    )


def _summary(mean: float, missing: float, scale: float = 1.0) -> Summary:
    """A normal's summary (sd sqrt(2), as the histograms above)."""
    z = {0.05: -1.645, 0.25: -0.674, 0.5: 0.0, 0.75: 0.674, 0.95: 1.645}
    sd = math.sqrt(2) * scale
    return Summary(mean=mean, std=sd, levels=list(SUMMARY_QUANTILES),
                   quantiles=[mean + z[q] * sd for q in SUMMARY_QUANTILES],
                   missing_share=missing)


def _prediction(task: str, moved: float, rng: random.Random) -> FeatureDrift:
    """The champion's prediction entry: its score (binary, regression) or predicted
    class (multiclass), shifted by ``moved``."""
    if task == "multiclass":
        entry = _categorical("predicted_class", ["0", "1", "2"], 2.5 * moved, rng)
    else:
        entry = _numeric("prediction", 0.8 * moved, rng)
    return msgspec.structs.replace(entry, critical=False)


def _categorical(name: str, cats: Sequence[str], tilt: float, rng: random.Random) -> FeatureDrift:
    reference = _normalise([*(1.0 / (i + 1) for i in range(len(cats))), 0.2, 0.02])
    window = _normalise([
        r * math.exp(tilt * (i - len(cats) / 2) / len(cats)) * (1 + 0.05 * rng.random())
        for i, r in enumerate(reference)
    ])
    psi = sum((w - r) * math.log(w / r) for w, r in zip(window, reference, strict=True))
    tvd = 0.5 * sum(abs(w - r) for w, r in zip(window, reference, strict=True))
    return FeatureDrift(
        name=name, kind="categorical", psi=psi, tvd=tvd, chi2_pvalue=10 ** (-60 * tvd),
        missing_share=window[-1], drifted=psi >= 0.2 or tvd >= 0.1,
        bins=[*cats, "other", "missing"], reference_shares=reference, window_shares=window,
        reference_summary=Summary(missing_share=reference[-1]),
        window_summary=Summary(missing_share=window[-1]),
    )


def sample_reports(
    n_windows: int = 12, drift_from: int = 6, extra_features: Sequence[str] = (), seed: int = 7,
    *, task: str | None = None, wall_offset: timedelta = timedelta(0),
) -> list[DriftReport]:
    """Drift reports of consecutive one-minute windows; drift starts at ``drift_from``;
    with a ``task``, each carries that task's prediction-drift entry."""
    rng = random.Random(seed)
    model = MODELS[task or "binary"]
    out = []
    for i in range(n_windows):
        drift = i >= drift_from
        features = [
            _numeric("age", 0.1 * rng.random(), rng),
            _numeric("income", (1.0 + 0.1 * (i - drift_from)) if drift else 0.05, rng,
                     critical=True),
            _numeric("tenure_days", 0.15 * rng.random(), rng),
            _categorical("country", ["DE", "FR", "US", "BR", "IN"], 1.5 if drift else 0.1, rng),
            _categorical("device", ["ios", "android", "web"], 0.2, rng),
            *(_numeric(name, 0.6 if drift else 0.0, rng) for name in extra_features),
        ]
        share = sum(f.drifted for f in features) / len(features)
        start = T0 + i * WINDOW
        prediction = _prediction(task, 1.0 if drift else 0.05, rng) if task else None
        out.append(DriftReport(
            event_id=f"report-{i}", model=model,
            window=WindowBounds(start_time=start, end_time=start + WINDOW, n_events=5000),
            reference_snapshot_id="snap-v1-2026-03-31",
            champion_version=1 if i < 10 else 2, features=features, drifted_share=share,
            drifted=share >= 0.3 or any(f.drifted and f.critical for f in features),
            created_at=start + WINDOW + timedelta(seconds=1) + wall_offset,
            prediction=prediction,
        ))
    return out


def _manifest(model: str, version: int, parent: int | None, request_id: str | None,
              loss: float, created: datetime, task: str) -> Manifest:
    metrics: dict[str, float] = {"val_loss": loss, "best_step": 310.0 * version}
    if parent:
        metrics |= {"replay_rows": 9570.0, "fresh_rows": 4212.0, "replay_share": 0.6944}
    if task == "binary":
        metrics["val_auc"] = 0.8 + 0.01 * version
    elif task == "multiclass":
        metrics["val_accuracy"] = 0.71 + 0.01 * version
    return Manifest(
        model=model, version=version, created_at=created,
        lineage=Lineage(
            training_snapshot_id=f"snap-v{version}", parent_version=parent,
            parent_snapshot_id=f"snap-v{parent}" if parent else None,
            request_id=request_id, reason="covariate" if parent else None,
        ),
        architecture={}, files={}, drift_reference_snapshot_id=f"snap-v{version}",
        metrics=metrics,
    )


def sample_data(
    extra_features: Sequence[str] = (), *, task: str = "binary",
    wall_offset: timedelta = timedelta(days=1),
) -> ReportData:
    """A complete report's data (see the module docstring)."""
    model = MODELS[task]
    scale = 30.0 if task == "regression" else 1.0  # squared error in label units
    reports = sample_reports(extra_features=extra_features, task=task, wall_offset=wall_offset)
    request = RetrainRequest(
        event_id="rr-1", request_id="retrain-7f3a9c0e5b1d4e2f", model=model,
        reason="covariate", base_version=1, window_start=reports[6].window.start_time,
        window_end=reports[7].window.end_time,
        drift_report_ids=[reports[6].event_id, reports[7].event_id],
        requested_at=reports[7].created_at,
    )
    candidate = ModelCandidate(event_id="c-2", model=model, version=2, parent_version=1,
                               request_id=request.request_id,
                               registry_uri=f"registry/{model}/2", sha256=SHA)
    promoted_at = reports[9].created_at + timedelta(seconds=20)
    verdict = ShadowVerdict(
        event_id="v-2", model=model, candidate=2, champion=1, samples=4000,
        metric=LOSSES[task], candidate_metric=0.4123 * scale, champion_metric=0.4871 * scale,
        test=PairedTest(method="paired_t", statistic=9.1, p_value=3e-12,
                        mean_difference=0.0748 * scale, relative_improvement=0.1536),
        decision="promote", reason="better at look 2", decided_at=promoted_at,
    )
    promotion = ModelPromotion(event_id="p-2", model=model, new_champion=2,
                               previous_champion=1, cause="shadow", promoted_at=promoted_at)
    run = {
        "model": model, "version": 3, "parent": 2, "champion": 2,
        "request_id": "retrain-manual-3", "started_at": (promoted_at + WINDOW).isoformat(),
        "snapshots": [
            {"n": n, "mean_champion": (0.41 + 0.004 * k) * scale,
             "mean_candidate": (0.43 - 0.006 * k) * scale}
            for k, n in enumerate((200, 400, 600))
        ],
        "moments": {"n": 730, "mean_champion": 0.421 * scale, "mean_candidate": 0.414 * scale},
    }
    return ReportData(
        model=model, generated_at=reports[-1].created_at + WINDOW,
        drift_reports=reports, retrain_requests=[request], candidates=[candidate],
        verdicts=[verdict], promotions=[promotion],
        versions=[
            _manifest(model, 1, None, None, 0.49 * scale, T0 - timedelta(days=1), task),
            _manifest(model, 2, 1, request.request_id, 0.41 * scale,
                      request.requested_at + WINDOW, task),
            _manifest(model, 3, 2, "retrain-manual-3", 0.40 * scale, promoted_at + WINDOW / 2,
                      task),
        ],
        aliases={"champion": {"alias": "champion", "version": 2, "previous": 1,
                              "updated_at": promoted_at.isoformat()}},
        shadow_runs=[run], thresholds=Thresholds(),
    )
