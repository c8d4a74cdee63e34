"""Drift detection core: reference profiles, per-window PSI/KS, policy and trigger.

Pure code, no Kafka: the monitor's consumer loop (``services.drift.service``) feeds it
closed windows and publishes what it decides.
"""

from services.drift.policy import DriftPolicy, FeatureVerdict, WindowVerdict, evaluate_window
from services.drift.profile import (
    ProfileCache,
    ReferenceProfile,
    build_reference_profile,
)
from services.drift.report import (
    build_drift_report,
    drift_report_id,
    retrain_request_id,
    window_key,
)
from services.drift.stats import FeatureStats, WindowStatsEngine, window_stats
from services.drift.trigger import RetrainTrigger, TriggerConfig, TriggerDecision
from services.drift.window import ClosedWindow, WindowAccumulator

__all__ = [
    "ClosedWindow",
    "DriftPolicy",
    "FeatureStats",
    "FeatureVerdict",
    "ProfileCache",
    "ReferenceProfile",
    "RetrainTrigger",
    "TriggerConfig",
    "TriggerDecision",
    "WindowAccumulator",
    "WindowStatsEngine",
    "WindowVerdict",
    "build_drift_report",
    "build_reference_profile",
    "drift_report_id",
    "evaluate_window",
    "retrain_request_id",
    "window_key",
    "window_stats",
]
