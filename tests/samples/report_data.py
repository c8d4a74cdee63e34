"""A deterministic, synthetic :class:`ReportData`: a model whose ``income`` and ``country``
drift half-way, one retrain request, a promoted candidate and another one in shadow.

Used by the report tests (rendering, collection from the topics, the browser check).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from services.registry.manifest import Lineage, Manifest
from services.report.render import ReportData, Thresholds
from streams.contracts import (
    DriftReport,
    FeatureDrift,
    ModelCandidate,
    ModelPromotion,
    PairedTest,
    RetrainRequest,
    ShadowVerdict,
    WindowBounds,
)

T0 = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
SHA = "ab" * 32


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
    )


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
    )


def sample_reports(
    n_windows: int = 12, drift_from: int = 6, extra_features: Sequence[str] = (), seed: int = 7
) -> list[DriftReport]:
    """Drift reports of consecutive one-minute windows; drift starts at ``drift_from``."""
    rng = random.Random(seed)
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
        out.append(DriftReport(
            event_id=f"report-{i}", model="churn",
            window=WindowBounds(start_time=start, end_time=start + WINDOW, n_events=5000),
            reference_snapshot_id="snap-v1-2026-03-31",
            champion_version=1 if i < 10 else 2, features=features, drifted_share=share,
            drifted=share >= 0.3 or any(f.drifted and f.critical for f in features),
            created_at=start + WINDOW + timedelta(seconds=1),
        ))
    return out


def _manifest(version: int, parent: int | None, request_id: str | None, loss: float,
              created: datetime) -> Manifest:
    return Manifest(
        model="churn", version=version, created_at=created,
        lineage=Lineage(
            training_snapshot_id=f"snap-v{version}", parent_version=parent,
            parent_snapshot_id=f"snap-v{parent}" if parent else None,
            request_id=request_id, reason="covariate" if parent else None,
        ),
        architecture={}, files={}, drift_reference_snapshot_id=f"snap-v{version}",
        metrics={"val_loss": loss, "val_auc": 0.8 + 0.01 * version},
    )


def sample_data(extra_features: Sequence[str] = ()) -> ReportData:
    """A complete report's data (see the module docstring)."""
    reports = sample_reports(extra_features=extra_features)
    request = RetrainRequest(
        event_id="rr-1", request_id="retrain-7f3a9c0e5b1d4e2f", model="churn",
        reason="covariate", base_version=1, window_start=reports[6].window.start_time,
        window_end=reports[7].window.end_time,
        drift_report_ids=[reports[6].event_id, reports[7].event_id],
        requested_at=reports[7].created_at,
    )
    candidate = ModelCandidate(event_id="c-2", model="churn", version=2, parent_version=1,
                               request_id=request.request_id, registry_uri="registry/churn/2",
                               sha256=SHA)
    promoted_at = reports[9].window.end_time + timedelta(seconds=20)
    verdict = ShadowVerdict(
        event_id="v-2", model="churn", candidate=2, champion=1, samples=4000,
        metric="log_loss", candidate_metric=0.4123, champion_metric=0.4871,
        test=PairedTest(method="paired_t", statistic=9.1, p_value=3e-12,
                        mean_difference=0.0748, relative_improvement=0.1536),
        decision="promote", reason="better at look 2", decided_at=promoted_at,
    )
    promotion = ModelPromotion(event_id="p-2", model="churn", new_champion=2,
                               previous_champion=1, cause="shadow", promoted_at=promoted_at)
    run = {
        "model": "churn", "version": 3, "parent": 2, "champion": 2,
        "request_id": "retrain-manual-3", "started_at": (promoted_at + WINDOW).isoformat(),
        "snapshots": [
            {"n": n, "mean_champion": 0.41 + 0.004 * k, "mean_candidate": 0.43 - 0.006 * k}
            for k, n in enumerate((200, 400, 600))
        ],
        "moments": {"n": 730, "mean_champion": 0.421, "mean_candidate": 0.414},
    }
    return ReportData(
        model="churn", generated_at=reports[-1].created_at + WINDOW,
        drift_reports=reports, retrain_requests=[request], candidates=[candidate],
        verdicts=[verdict], promotions=[promotion],
        versions=[
            _manifest(1, None, None, 0.49, T0 - timedelta(days=1)),
            _manifest(2, 1, request.request_id, 0.41, request.requested_at + WINDOW),
            _manifest(3, 2, "retrain-manual-3", 0.40, promoted_at + WINDOW / 2),
        ],
        aliases={"champion": {"alias": "champion", "version": 2, "previous": 1,
                              "updated_at": promoted_at.isoformat()}},
        shadow_runs=[run], thresholds=Thresholds(),
    )
