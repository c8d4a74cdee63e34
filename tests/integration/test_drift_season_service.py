"""The drift monitor over the real broker with a declared daily cycle: a cycle the
reference holds asks for nothing, a real shift in the same stream still does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from samples.topic_reader import read_events

from services.drift.check import check_frame
from services.drift.policy import DriftSettings
from services.drift.profile import build_reference_profile
from services.drift.references import ModelReference, StaticReferences
from services.drift.season import ReferenceRows
from services.drift.service import DriftMonitor
from services.featurespec import FeatureSpec, ModelSpec
from streams.contracts import DriftReport, EpisodeEvent, FeatureEvent, RetrainRequest
from streams.producer import EventProducer
from streams.settings import Settings, load_settings

pytestmark = pytest.mark.integration
SPEC = ModelSpec(
    model="m1", entity="card_id",
    features=(*(FeatureSpec(f"x{i}", "numeric") for i in range(5)),
              FeatureSpec("channel", "categorical")),
)
CYCLIC = ("x0", "x1", "x2")  # half the features follow the cycle
DAY = 86_400.0
WINDOW = 400  # events per window: two hours of event time
SPACING_S = 7_200.0 / WINDOW
LIVE = datetime(2026, 3, 5, tzinfo=UTC)  # a midnight, after four days of reference
SEASON = {"period": "P1D", "buckets": 24}


def _frame(start: datetime, n: int, spacing_s: float, seed: int,
           shift: float = 0.0) -> pd.DataFrame:
    """``n`` rows every ``spacing_s`` from ``start``; the cyclic features carry a daily
    cycle of 0.6 sd (plus ``shift``)."""
    rng = np.random.default_rng(seed)
    times = pd.Timestamp(start) + pd.to_timedelta(np.arange(n) * spacing_s, unit="s")
    phase = np.sin(2 * np.pi * ((times - pd.Timestamp(start).normalize())
                                / pd.Timedelta(days=1) % 1.0))
    data: dict[str, Any] = {}
    for i in range(5):
        data[f"x{i}"] = rng.standard_normal(n) + (
            0.6 * np.asarray(phase) + shift if f"x{i}" in CYCLIC else 0.0)
    data["channel"] = rng.choice(["online", "pos", "atm"], size=n, p=[0.5, 0.3, 0.2])
    data["event_timestamp"] = times
    return pd.DataFrame(data)


def _reference() -> tuple[ModelReference, pd.DataFrame]:
    frame = _frame(LIVE - timedelta(days=4), 4 * 24 * 100, 36.0, seed=0)
    profile = build_reference_profile(frame, SPEC, "snap-cyclic")
    rows = ReferenceRows.from_frame(frame, SPEC)
    return ModelReference(spec=SPEC, profile=profile, champion_version=1, rows=rows), frame


def _events(frame: pd.DataFrame) -> list[FeatureEvent]:
    # one entity: one partition, so each window is two consecutive hours of event time
    return [
        FeatureEvent(
            event_id=uuid.uuid4().hex, model="m1", entity_id="c1",
            event_time=row.pop("event_timestamp").to_pydatetime(),
            features={k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()},
        )
        for row in frame.to_dict("records")
    ]


_read = read_events


def test_a_declared_cycle_asks_for_nothing_until_a_real_shift(settings: Settings) -> None:
    reference, _ = _reference()
    cyclic = _frame(LIVE, 12 * WINDOW, SPACING_S, seed=1)  # one whole day, 12 windows
    shifted = _frame(LIVE + timedelta(days=1), 4 * WINDOW, SPACING_S, seed=2, shift=1.5)
    # The bug this guards against: without the setting this day asks for a retrain.
    plain = check_frame(cyclic, SPEC, reference.profile, DriftSettings(), window_size=WINDOW)
    assert sum(r.report.drifted for r in plain) >= 6 and any(r.decision.fire for r in plain)

    drift = {"window_events": WINDOW, "window_seconds": 3 * 7_200, "ks_method": "asymp",
             "idle_flush_seconds": 3600, "seasonality": SEASON,
             "in_flight_timeout": "P1D"}  # windows of two hours: a request stays in flight
    s = load_settings(**{**settings.model_dump(), "models": {"m1": {"drift": drift}}})
    with EventProducer(s, "test") as producer:
        for e in [*_events(cyclic), *_events(shifted)]:
            producer.send(s.topic("features"), e, key=e.entity_id, span=False)
    monitor = DriftMonitor(s, references=StaticReferences({"m1": reference}))
    monitor.run(until=lambda: monitor.stats.windows >= 16, idle_timeout_s=60)

    reports = sorted(_read(s, "drift.reports", DriftReport, 16),
                     key=lambda r: r.window.start_time)
    assert len(reports) == 16
    day, after = reports[:12], reports[12:]
    assert [r.drifted for r in day] == [False] * 12
    assert [r.reference_phase.split(" (")[0] for r in day] == [
        f"{2 * k:02d}:00:00-{(2 * k + 2) % 24:02d}:00:00 of 1d" for k in range(12)]
    assert all(r.drifted for r in after)
    requests = _read(s, "retrain.requests", RetrainRequest, 1)
    assert len(requests) == 1, "the cycle asked for nothing; the shift once"
    assert requests[0].change_point == after[0].window.start_time == LIVE + timedelta(days=1)
    opened = _read(s, "retrain.episodes", EpisodeEvent, 1)
    assert [e.status for e in opened] == ["opened"]
