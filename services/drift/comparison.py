"""What one window is compared with: the live monitor's and ``drift check``'s one rule.

Without a declared cycle every window is compared with the whole reference profile
(one :class:`~services.drift.stats.WindowStatsEngine`, prepared once). With one
(``drift.seasonality``) each window is compared with the profile of the reference rows
of its phase (:mod:`services.drift.season`); the engine and reference summaries of each
phase profile are prepared once and kept, so a window costs what it costs without one.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.drift.policy import Seasonality
from services.drift.profile import ReferenceProfile, profile_summaries
from services.drift.season import ReferenceRows, SeasonalProfiles
from services.drift.stats import WindowStatsEngine
from services.featurespec import ModelSpec
from streams.contracts import Summary

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Comparison:
    """The engine, reference summaries and phase (``None``: the whole reference) of a
    window."""

    engine: WindowStatsEngine
    summaries: dict[str, Summary]
    phase: str | None = None


class WindowReference:
    """Resolves, per window, what it is compared with (see module docstring)."""

    def __init__(
        self,
        profile: ReferenceProfile,
        spec: ModelSpec,
        *,
        ks_method: Literal["auto", "asymp"] = "auto",
        seasonality: Seasonality | None = None,
        rows: ReferenceRows | None = None,
    ) -> None:
        """``rows`` (the reference's rows with event times) are needed with
        ``seasonality``; without them the whole reference is used, and that is logged."""
        self.ks_method = ks_method
        self.whole = Comparison(WindowStatsEngine(profile, spec, ks_method=ks_method),
                                profile_summaries(profile))
        self.seasonal: SeasonalProfiles | None = None
        if seasonality is not None:
            if rows is None:
                log.error("%s: seasonality declared but the reference %s has no event times: "
                          "windows are compared with the whole reference", spec.model,
                          profile.snapshot_id)
            else:
                self.seasonal = SeasonalProfiles(profile, spec, rows, seasonality)
        self._by_profile: dict[str, Comparison] = {}
        self._lock = threading.Lock()

    @property
    def engine(self) -> WindowStatsEngine:
        """The whole reference's engine."""
        return self.whole.engine

    def for_window(self, start: datetime, end: datetime) -> Comparison:
        """What a window whose event times run from ``start`` to ``end`` is compared with."""
        if self.seasonal is None:
            return self.whole
        choice = self.seasonal.select(start, end)
        profile = choice.profile
        with self._lock:
            hit = self._by_profile.get(profile.snapshot_id)
        if hit is None and choice.range.whole:
            hit = self.whole
        elif hit is None:
            hit = Comparison(WindowStatsEngine(profile, self.whole.engine.spec,
                                               ks_method=self.ks_method),
                             profile_summaries(profile))
            with self._lock:
                self._by_profile[profile.snapshot_id] = hit
        return Comparison(hit.engine, hit.summaries, choice.label())
