"""Outbound drift events: the per-window report and the deterministic request id.

Ids are derived from the model, the reference snapshot and the window (its offsets per
partition, or its event-time range when it has none), so a window that is redelivered
and recomputed after a restart yields the same report id and the same retrain request
id: consumers deduplicate on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime

from services.drift.policy import WindowVerdict
from streams.contracts import DriftReport, FeatureDrift, Summary, WindowBounds

ID_HEX_CHARS = 32


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\x1f")
    return h.hexdigest()[:ID_HEX_CHARS]


def window_key(bounds: WindowBounds) -> str:
    """A stable text key of a window: offsets per partition, else its time range."""
    if bounds.offsets:
        return ";".join(
            f"{r.topic}:{r.partition}:{r.first_offset}-{r.last_offset}"
            for r in sorted(bounds.offsets, key=lambda r: (r.topic, r.partition))
        )
    return f"{bounds.start_time.isoformat()}/{bounds.end_time.isoformat()}/{bounds.n_events}"


def retrain_request_id(model: str, reference_snapshot_id: str, window_key: str) -> str:
    """Idempotency key of a retrain request (sha256 hex prefix, 32 characters)."""
    return _digest("retrain", model, reference_snapshot_id, window_key)


def episode_request_id(
    model: str, reference_snapshot_id: str, previous_request_id: str | None
) -> str:
    """Idempotency key of the next retrain request of ``model`` against a reference.

    Derived from the model's latest request on ``retrain.requests`` (one partition per
    model, so every reader agrees on which is latest), not from the window that fired:
    replicas that each see their own partitions' windows alarm at about the same time,
    and before either has read the other's request they derive the same key, so the
    second request is a harmless duplicate instead of a second retrain.
    """
    return _digest("retrain-episode", model, reference_snapshot_id, previous_request_id or "-")


def drift_report_id(model: str, reference_snapshot_id: str, window_key: str) -> str:
    """Deterministic ``event_id`` of a window's drift report."""
    return _digest("drift-report", model, reference_snapshot_id, window_key)


def build_drift_report(
    model: str,
    bounds: WindowBounds,
    verdict: WindowVerdict,
    reference_snapshot_id: str,
    *,
    champion_version: int | None = None,
    created_at: datetime | None = None,
    event_id: str | None = None,
    histograms: bool = True,
    invalid: Mapping[str, int] | None = None,
    reference_summaries: Mapping[str, Summary] | None = None,
    window_summaries: Mapping[str, Summary] | None = None,
    prediction: FeatureDrift | None = None,
    reference_phase: str | None = None,
) -> DriftReport:
    """The ``drift.reports`` event of one window (with each feature's PSI histogram
    unless ``histograms`` is false; ``invalid``: per feature, values that were not finite
    numbers; the summaries: per feature, reference and window summary statistics;
    ``prediction``: the champion's prediction drift entry; ``reference_phase``: under a
    declared cycle, the reference phase range the window was compared with)."""
    invalid = invalid or {}
    ref_summary = reference_summaries or {}
    win_summary = window_summaries or {}
    features = [
        FeatureDrift(
            name=f.name,
            kind=f.kind,
            psi=f.stats.psi,
            ks_statistic=f.stats.ks_statistic,
            ks_pvalue=f.stats.ks_pvalue,
            tvd=f.stats.tvd,
            chi2_pvalue=f.stats.chi2_pvalue,
            missing_share=f.stats.missing_share,
            drifted=f.drifted,
            critical=f.critical,
            invalid=int(invalid.get(f.name, 0)),
            bins=list(f.stats.bins) if histograms else [],
            reference_shares=list(f.stats.reference_shares) if histograms else [],
            window_shares=list(f.stats.window_shares) if histograms else [],
            reference_summary=ref_summary.get(f.name),
            window_summary=win_summary.get(f.name) or (
                Summary(missing_share=f.stats.missing_share) if window_summaries else None),
        )
        for f in verdict.features
    ]
    return DriftReport(
        event_id=event_id or drift_report_id(model, reference_snapshot_id, window_key(bounds)),
        model=model,
        window=bounds,
        reference_snapshot_id=reference_snapshot_id,
        champion_version=champion_version,
        features=features,
        drifted_share=verdict.drifted_share,
        drifted=verdict.drifted,
        created_at=created_at or datetime.now(UTC),
        prediction=prediction,
        **({"reference_phase": reference_phase} if reference_phase is not None else {}),
    )
