"""Gather what the report shows: events from the topics, manifests from the registry,
running candidates from the shadow service's state, thresholds from the drift policy.

Topics are read with a :class:`~streams.tail.TopicTail` (every partition from the
beginning, no group join, nothing committed), until no new message has arrived for
``idle_s`` seconds. End offsets are not used to decide when to stop:
some brokers (the embedded one among them) report wrong high watermarks.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.registry.manifest import Manifest
from services.registry.store import ModelRegistry, RegistryError
from services.report.render import ReportData, Thresholds
from streams.contracts import (
    DriftReport,
    Event,
    ModelCandidate,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
)
from streams.settings import Settings
from streams.tail import TopicTail

REPORT_TOPICS: dict[str, type[Event]] = {
    "drift.reports": DriftReport,
    "retrain.requests": RetrainRequest,
    "models.candidates": ModelCandidate,
    "models.verdicts": ShadowVerdict,
    "models.promotions": ModelPromotion,
}
"""Topic name (unprefixed) -> the event type it carries."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


@dataclass
class TopicRead:
    """Decoded events per topic, and how many messages could not be decoded."""

    events: dict[str, list[Event]] = field(default_factory=dict)
    messages: int = 0
    undecodable: int = 0
    missing_topics: list[str] = field(default_factory=list)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30m``/``6h``/``7d``/``2w``/``90s`` back from ``now``, or an ISO 8601 time
    (without a zone: UTC)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: expected an ISO 8601 time or a duration like 30m, 6h, 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_topics(
    settings: Settings,
    topics: Mapping[str, type[Event]],
    *,
    idle_s: float = 2.0,
    start_grace_s: float = 3.0,
    max_s: float = 300.0,
) -> TopicRead:
    """Every message of ``topics`` (full names -> event type), decoded, in offset order
    per partition (a :class:`~streams.tail.TopicTail`: undecodable messages are counted,
    topics not on the broker are named). Stops after ``idle_s`` without a new message
    (``idle_s + start_grace_s`` before the first one), or after ``max_s`` in all; at once
    when none of the topics exists."""
    result = TopicRead(events={t: [] for t in topics})
    with TopicTail(settings, topics, name="report") as tail:
        if len(tail.missing) < len(topics):
            start = last = time.monotonic()
            while True:
                now = time.monotonic()
                grace = 0.0 if tail.messages else start_grace_s
                if now - last >= idle_s + grace or now - start >= max_s:
                    break
                seen = tail.messages
                for record in tail.poll(timeout=0.2):
                    result.events[record.topic].append(record.event)
                if tail.messages > seen:
                    last = time.monotonic()
        result.messages, result.undecodable = tail.messages, tail.undecodable
        result.missing_topics = tail.missing
    return result


def _dedupe(events: list[Any], key: str = "event_id") -> list[Any]:
    seen: set[str] = set()
    out = []
    for e in events:
        k = getattr(e, key)
        if k not in seen:
            seen.add(k)
            out.append(e)
    return out


def _at_or_after(moment: datetime, since: datetime | None) -> bool:
    return since is None or moment >= since


def drift_thresholds(settings: Settings, model: str) -> tuple[Thresholds, str | None]:
    """The drift policy of ``model`` (its ``drift`` options over the defaults) as chart
    thresholds, with a note when the options were not a valid policy."""
    policy = settings.model(model).drift  # validated when the settings loaded
    note = None
    return (
        Thresholds(policy.psi_threshold, policy.ks_min_statistic, policy.ks_alpha,
                   policy.drifted_share),
        note,
    )


def load_lineage(
    registry: ModelRegistry, model: str
) -> tuple[list[Manifest], dict[str, dict[str, Any]]]:
    """Every committed version's manifest, and every alias's record, of ``model``."""
    versions = []
    for v in registry.list_versions(model):
        try:
            versions.append(registry.manifest(model, v))
        except RegistryError:  # deleted by retention in between
            continue
    aliases = {}
    for name in registry.aliases(model):
        record = registry.alias_record(model, name)
        if record is not None:
            aliases[name] = record
    return versions, aliases


def load_shadow_runs(path: Path, model: str) -> tuple[list[dict[str, Any]], str | None]:
    """The running candidates of ``model`` in the shadow service's state file (its
    paired-loss moments at each planned look), with a note when it cannot be read."""
    if not path.exists():
        return [], None
    try:
        book = json.loads(path.read_text())
        runs = [r for r in book.get("runs", []) if r.get("model") == model]
    except (OSError, ValueError, AttributeError) as exc:
        return [], f"shadow state {path} is unreadable: {exc}"
    return sorted(runs, key=lambda r: r.get("version", 0)), None


def collect(
    settings: Settings,
    model: str,
    *,
    since: datetime | None = None,
    registry: ModelRegistry | None = None,
    shadow_state: Path | None = None,
    idle_s: float = 2.0,
    now: datetime | None = None,
) -> ReportData:
    """Everything :func:`services.report.render.render_report` needs for ``model``."""
    names = {settings.topic(name): name for name in REPORT_TOPICS}
    read = read_topics(settings, {full: REPORT_TOPICS[n] for full, n in names.items()},
                       idle_s=idle_s)
    by_name: dict[str, list[Any]] = {
        names[full]: [e for e in events if getattr(e, "model", None) == model]
        for full, events in read.events.items()
    }
    reports = sorted(
        (r for r in _dedupe(by_name["drift.reports"])
         if _at_or_after(r.window.end_time, since)),
        key=lambda r: (r.window.end_time, r.created_at),
    )
    requests = sorted(
        (r for r in _dedupe(by_name["retrain.requests"], "request_id")
         if _at_or_after(r.requested_at, since)),
        key=lambda r: r.requested_at,
    )
    candidates = sorted(_dedupe(by_name["models.candidates"]), key=lambda c: c.version)
    verdicts = sorted(
        (v for v in _dedupe(by_name["models.verdicts"]) if _at_or_after(v.decided_at, since)),
        key=lambda v: v.decided_at,
    )
    promotions = sorted(
        (p for p in _dedupe(by_name["models.promotions"])
         if _at_or_after(p.promoted_at, since)),
        key=lambda p: p.promoted_at,
    )
    notes = []
    if read.undecodable:
        notes.append(f"{read.undecodable} message(s) on the report topics could not be decoded "
                     "and were skipped")
    if read.missing_topics:
        notes.append("topics not found on the broker: " + ", ".join(sorted(read.missing_topics)))
    thresholds, note = drift_thresholds(settings, model)
    if note:
        notes.append(note)
    registry = registry or ModelRegistry(settings.registry_uri)
    versions, aliases = load_lineage(registry, model)
    runs, note = load_shadow_runs(
        shadow_state or settings.state_dir / "shadow" / "book.json", model
    )
    if note:
        notes.append(note)
    return ReportData(
        model=model, generated_at=now or datetime.now(UTC), drift_reports=reports,
        retrain_requests=requests, candidates=candidates, verdicts=verdicts,
        promotions=promotions, versions=versions, aliases=aliases, shadow_runs=runs,
        thresholds=thresholds, since=since, notes=notes,
    )
