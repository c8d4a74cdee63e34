"""Drift detection core: reference profiles, per-window PSI/KS, policy and trigger.

Pure code, no Kafka: the monitor's consumer loop (``services.drift.service``) feeds it
closed windows and publishes what it decides. The names below are imported on first
use, so reading a policy (the CLI's option defaults) does not load numpy and scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DriftPolicy": "policy", "FeatureVerdict": "policy", "WindowVerdict": "policy",
    "evaluate_window": "policy", "Seasonality": "policy",
    "WindowReference": "comparison", "ReferenceRows": "season",
    "SeasonalProfiles": "season",
    "ProfileCache": "profile", "ReferenceProfile": "profile",
    "build_reference_profile": "profile",
    "build_drift_report": "report", "drift_report_id": "report",
    "retrain_request_id": "report", "window_key": "report", "episode_request_id": "report",
    "FeatureStats": "stats", "WindowStatsEngine": "stats", "window_stats": "stats",
    "RetrainTrigger": "trigger", "TriggerConfig": "trigger", "TriggerDecision": "trigger",
    "ClosedWindow": "window", "WindowAccumulator": "window",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
