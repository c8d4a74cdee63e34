"""Prediction drift from the live drift monitor to the report: a real registered torch
champion scores its reference snapshot once and every window's events; the entry rides
in ``drift.reports`` (moved windows drifted, calm ones not) and the report charts it."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from confluent_kafka import Consumer

from services.drift.profile import build_reference_profile
from services.drift.references import ModelReference, StaticReferences
from services.drift.service import DriftMonitor
from services.model.preprocessing import Preprocessor
from services.model.scoring import load_scorer
from services.model.tabular import build_tabular
from services.registry.manifest import Lineage
from services.registry.store import ModelRegistry
from services.report.render import ReportData, render_report
from services.training.config import ArchitectureConfig
from services.training.synthetic import synthetic_frame, synthetic_spec
from streams.codec import decode
from streams.contracts import DriftReport, FeatureEvent
from streams.producer import EventProducer
from streams.settings import Settings, load_settings

pytestmark = pytest.mark.integration
SPEC = synthetic_spec(n_numeric=3, n_categorical=1, model="m1")
WINDOW = 400
T0 = datetime(2026, 3, 1, tzinfo=UTC)


class SnapshotScores:
    """The champion from a real registry; its reference snapshot given as a frame."""

    def __init__(self, registry: ModelRegistry, frame: pd.DataFrame) -> None:
        self.registry, self.frame, self.loads = registry, frame, 0

    def load(self, model: str, reference: ModelReference) -> tuple[Any, Any, np.ndarray]:
        self.loads += 1
        scorer = load_scorer(self.registry, model, reference.champion_version)
        return scorer.predict, scorer.task, scorer.predict(self.frame)


def _registry(tmp_path: Path, frame: pd.DataFrame) -> ModelRegistry:
    torch.manual_seed(3)
    pre = Preprocessor.fit(SPEC, frame)
    module = build_tabular(pre.schema, ArchitectureConfig(hidden_sizes=(8,), dropout=0.0))
    registry = ModelRegistry(str(tmp_path / "registry"))
    registry.register("m1", state_dict=module.state_dict(), preprocessing=pre.to_dict(),
                      model_meta=module.meta, lineage=Lineage(training_snapshot_id="snap-p"),
                      hyperparameters={}, metrics={}, seeds={})
    return registry


def _events(frame: pd.DataFrame, start: int) -> list[FeatureEvent]:
    rows = frame[list(SPEC.names)].to_dict("records")
    return [
        FeatureEvent(event_id=uuid.uuid4().hex, model="m1", entity_id=f"e{start + i}",
                     event_time=T0 + timedelta(milliseconds=10 * (start + i)),
                     features={k: (v.item() if hasattr(v, "item") else v)
                               for k, v in row.items()})
        for i, row in enumerate(rows)
    ]


def _read_reports(settings: Settings, count: int, timeout: float = 30) -> list[DriftReport]:
    consumer = Consumer(settings.kafka.consumer_config(f"r-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic("drift.reports")])
    out: list[DriftReport] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=100, timeout=0.5):
                if msg.error() is None:
                    out.append(decode(msg.value(), DriftReport))
    finally:
        consumer.close()
    return out


def test_prediction_drift_entries_reach_the_report(settings: Settings, tmp_path: Path) -> None:
    reference = synthetic_frame(5_000, SPEC, seed=0)
    source = SnapshotScores(_registry(tmp_path, reference), reference)
    s = load_settings(**{**settings.model_dump(), "models": {"m1": {"drift": {
        "window_events": WINDOW, "window_seconds": 3600, "ks_method": "asymp",
        "idle_flush_seconds": 3600, "prediction": True}}}})
    calm = _events(synthetic_frame(3 * WINDOW, SPEC, seed=1), 0)
    moved = _events(synthetic_frame(3 * WINDOW, SPEC, seed=2, shift=2.0), 3 * WINDOW)
    with EventProducer(s, "test") as producer:
        for e in [*calm, *moved]:
            producer.send(s.topic("features"), e, key="one-partition", span=False)
    profile = build_reference_profile(reference, SPEC, "snap-p")
    monitor = DriftMonitor(s, predictions=source, references=StaticReferences(
        {"m1": ModelReference(spec=SPEC, profile=profile, champion_version=1)}))
    monitor.run(until=lambda: monitor.stats.windows >= 6, idle_timeout_s=60)

    assert source.loads == 1  # the reference snapshot was scored once, not per window
    reports = sorted(_read_reports(s, 6), key=lambda r: r.window.start_time)
    assert len(reports) == 6 and all(r.prediction is not None for r in reports)
    entries = [r.prediction for r in reports]
    assert all(p.name == "prediction" and p.kind == "numeric" for p in entries)
    assert [p.drifted for p in entries] == [False] * 3 + [True] * 3
    assert max(p.psi for p in entries[:3]) < min(p.psi for p in entries[3:])
    assert max(p.ks_statistic for p in entries[:3]) < 0.075 < min(p.ks_statistic
                                                                   for p in entries[3:])
    assert all(len(p.reference_summary.quantiles) == 5 for p in entries)
    # summaries of the features ride along too
    assert all(f.window_summary is not None and f.reference_summary is not None
               for r in reports for f in r.features)

    html = render_report(ReportData(model="m1", generated_at=datetime.now(UTC),
                                    drift_reports=reports))
    assert 'id="chart-prediction"' in html and "3 of 6 windows drifted" in html
