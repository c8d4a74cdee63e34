"""What one closed-loop run produced, counted from its topics (a pure fold).

The harness reads ``drift.reports``, ``retrain.requests``, ``retrain.episodes``,
``models.candidates``, ``models.verdicts`` and ``models.promotions`` from the start and
folds every event of the benchmark's model here; nothing is taken from the services'
internals. Redelivered events (the same ``event_id``, the same request id, the same
window) count once.

Promotion time in event time: a promotion carries only a wall clock, so it is placed by
the drift windows around it: after the end of the last window judged against the
previous champion and at most at the end of the first window judged against the new one
(windows follow each other in event time; the monitor switches its reference when it
reads the promotion).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.episodes.book import EpisodeBook
from streams.contracts import (
    DriftReport,
    EpisodeEvent,
    ModelCandidate,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
)

SETTLING = ("insufficient_data", "adapted", "failed")  # episode statuses that answer a request
OPENER = {"concept": "online", "covariate": "drift"}  # request reason -> its detector


@dataclass
class Tally:
    """The events of one model, deduplicated, in the order they were read."""

    model: str
    reports: dict[tuple[datetime, datetime], DriftReport] = field(default_factory=dict)
    requests: dict[str, RetrainRequest] = field(default_factory=dict)
    episode_events: dict[str, EpisodeEvent] = field(default_factory=dict)
    candidates: dict[int, ModelCandidate] = field(default_factory=dict)
    verdicts: dict[int, ShadowVerdict] = field(default_factory=dict)  # by candidate version
    promotions: dict[str, ModelPromotion] = field(default_factory=dict)
    book: EpisodeBook = field(default_factory=EpisodeBook)  # which requests were absorbed
    # windows with fewer events are reported but never judged (the drift policy's
    # ``min_window_events``; an idle flush closes such a window when the stream pauses)
    min_window_events: int = 200

    def fold(self, event: Any) -> None:
        """Take one decoded event (of any model; others are ignored)."""
        if getattr(event, "model", None) != self.model:
            return
        if isinstance(event, RetrainRequest | EpisodeEvent | ShadowVerdict):
            self.book.fold(event)
        if isinstance(event, DriftReport):
            self.reports.setdefault((event.window.start_time, event.window.end_time), event)
        elif isinstance(event, RetrainRequest):
            self.requests.setdefault(event.request_id, event)
        elif isinstance(event, EpisodeEvent):
            self.episode_events.setdefault(event.event_id, event)
        elif isinstance(event, ModelCandidate):
            self.candidates.setdefault(event.version, event)
        elif isinstance(event, ShadowVerdict):
            self.verdicts.setdefault(event.candidate, event)
        elif isinstance(event, ModelPromotion):
            self.promotions.setdefault(event.event_id, event)

    # -- counts ----------------------------------------------------------------------
    @property
    def reported_events(self) -> int:
        """Feature events the drift monitor has reported on (all windows)."""
        return sum(r.window.n_events for r in self.reports.values())

    def windows(self) -> list[DriftReport]:
        """The drift reports in event-time order."""
        return sorted(self.reports.values(), key=lambda r: r.window.end_time)

    def requests_by_reason(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.requests.values()))

    def episodes(self) -> set[str]:
        """The model's episodes as the services' own book folds them: a request that raced
        the first of an open episode (both detectors alarming before either read the
        other) is folded into it, not counted as an episode (see :meth:`absorbed`)."""
        return {e.episode_id for e in self.book.for_model(self.model)}

    def absorbed(self) -> int:
        """Requests folded into another open episode (never trained)."""
        return sum(1 for r in self.requests.values() if self.book.absorbed(r) is not None)

    def episode_statuses(self) -> dict[str, int]:
        return dict(Counter(e.status for e in self.episode_events.values()))

    def shadow_promotions(self) -> list[ModelPromotion]:
        """Promotions by the shadow evaluator (one per new champion), oldest first."""
        seen: dict[int, ModelPromotion] = {}
        for p in self.promotions.values():
            if p.cause == "shadow":
                seen.setdefault(p.new_champion, p)
        return sorted(seen.values(), key=lambda p: p.promoted_at)

    def rollbacks(self) -> list[ModelPromotion]:
        """Champion moves back to an earlier version (cause ``rollback``), oldest first."""
        return sorted((p for p in self.promotions.values() if p.cause == "rollback"),
                      key=lambda p: p.promoted_at)

    def windows_by_champion(self, *, small: bool = False) -> dict[int | None, tuple[int, int]]:
        """``version -> (windows judged against it, of which drifted)``; ``small``: the
        windows under ``min_window_events`` instead, which the policy never judges."""
        out: dict[int | None, tuple[int, int]] = {}
        for r in self.reports.values():
            if (r.window.n_events < self.min_window_events) != small:
                continue
            n, drifted = out.get(r.champion_version, (0, 0))
            out[r.champion_version] = (n + 1, drifted + int(r.drifted))
        return out

    def opened_by(self) -> str | None:
        """The detector that opened the model's first episode: the reason of the first
        attempt-1 request in ``retrain.requests`` order (one partition per model, so the
        order they were folded in), ``online`` for ``concept`` and ``drift`` for
        ``covariate``; None without a detector's request."""
        for r in self.requests.values():
            if r.attempt == 1 and not r.refinement and r.reason in OPENER:
                return OPENER[r.reason]
        return None

    def requests_after_promotion(self) -> list[RetrainRequest] | None:
        """Requests that open a new episode after the last shadow promotion: attempt 1,
        not a refinement, ``requested_at`` (wall clock) after that promotion's
        ``promoted_at``, and not absorbed into an open episode (one that raced the
        promoted episode's end is part of it, never trained). None without a promotion."""
        promotions = self.shadow_promotions()
        if not promotions:
            return None
        promoted_at = promotions[-1].promoted_at
        return [r for r in self.requests.values()
                if r.attempt == 1 and not r.refinement and r.requested_at > promoted_at
                and self.book.absorbed(r) is None]

    def promoted_request(self, version: int) -> RetrainRequest | None:
        """The request a promoted version answered (through its verdict or candidate)."""
        verdict = self.verdicts.get(version)
        request_id = verdict.request_id if verdict is not None else None
        if request_id is None and version in self.candidates:
            request_id = self.candidates[version].request_id
        return self.requests.get(request_id) if request_id else None

    def promotion_window(self, version: int) -> tuple[datetime | None, datetime | None]:
        """Event-time bounds of ``version``'s promotion (see the module doc)."""
        ordered = self.windows()
        for i, report in enumerate(ordered):
            if report.champion_version == version:
                before = ordered[i - 1].window.end_time if i > 0 else None
                return before, report.window.end_time
        return None, None

    def pending(self) -> list[str]:
        """Requests with no answer yet: no verdict on a candidate of theirs, and no
        ``insufficient_data`` or ``failed`` episode event naming them, and not folded into
        another open episode (such a request is never trained)."""
        answered = {v.request_id for v in self.verdicts.values() if v.request_id}
        answered |= {c.request_id for c in self.candidates.values()
                     if c.version in self.verdicts and c.request_id}
        answered |= {e.request_id for e in self.episode_events.values()
                     if e.status in SETTLING and e.request_id}
        return [rid for rid, request in self.requests.items()
                if rid not in answered and self.book.absorbed(request) is None]
