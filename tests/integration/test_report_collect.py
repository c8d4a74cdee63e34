"""The report from real sources: events produced to the test broker, a local registry with
two versions, the shadow service's state file; collected, rendered, and written by the
``report`` command."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
import torch
import typer
from samples.report_data import sample_data, sample_reports
from typer.testing import CliRunner

from services.cli import report as report_cli
from services.cli.context import CliContext
from services.registry.manifest import Lineage
from services.registry.store import ModelRegistry
from services.report.collect import collect
from services.report.render import SECTION_IDS, ReportData, render_report
from services.shadow.book import ShadowBook
from services.shadow.decision import ShadowPolicy
from services.shadow.pairing import Pair
from streams.contracts import DriftReport
from streams.producer import EventProducer
from streams.settings import Settings

pytestmark = pytest.mark.integration

MODEL = "churn"
HOSTILE = "<script>alert(1)</script>"


@dataclass(frozen=True)
class Published:
    reports: list[DriftReport]
    sample: ReportData


def _publish(settings: Settings) -> Published:
    sample = sample_data()
    reports = sample_reports(n_windows=3, drift_from=1, extra_features=[HOSTILE])
    elsewhere = msgspec.structs.replace(reports[0], event_id="other-model", model="other")
    with EventProducer(settings, "test") as producer:
        for r in [*reports, reports[1], elsewhere]:  # a redelivered report, another model
            producer.send(settings.topic("drift.reports"), r, r.model)
        producer.send_raw(settings.topic("drift.reports"), b"{not json", MODEL, [])
        producer.send(settings.topic("retrain.requests"), sample.retrain_requests[0], MODEL)
        producer.send(settings.topic("models.candidates"), sample.candidates[0], MODEL)
        producer.send(settings.topic("models.verdicts"), sample.verdicts[0], MODEL)
        producer.send(settings.topic("models.promotions"), sample.promotions[0], MODEL)
        producer.flush()
    return Published(reports, sample)


def _registry(settings: Settings, request_id: str) -> ModelRegistry:
    registry = ModelRegistry(settings.registry_uri)
    for parent, rid in ((None, None), (1, request_id)):
        registry.register(
            MODEL, state_dict={"w": torch.full((2, 2), float(parent or 0))},
            preprocessing={"numeric": []}, model_meta={"hidden": [2]},
            lineage=Lineage(training_snapshot_id=f"snap-{rid or 'initial'}",
                            parent_version=parent, request_id=rid,
                            reason="covariate" if parent else None),
            hyperparameters={"lr": 0.001}, metrics={"val_loss": 0.4 if parent else 0.5},
            seeds={"seed": 0},
        )
    registry.set_alias(MODEL, "champion", 1, expected=None)
    registry.set_alias(MODEL, "champion", 2, expected=1)
    return registry


def _shadow_state(settings: Settings) -> None:
    book = ShadowBook(ShadowPolicy(min_pairs=30, look_every=30, max_pairs=300))
    book.add_candidate(MODEL, 3, 2, "req-3", "reg/churn/3", "ab" * 32, champion=2,
                       now=sample_reports(n_windows=1)[0].created_at)
    for i in range(100):
        book.add_pair(MODEL, Pair(f"e{i}", 1.0, 0.5, {3: 0.45 + (i % 2) * 0.02}))
    path = settings.state_dir / "shadow" / "book.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(book.to_json())


@pytest.fixture
def sources(settings: Settings) -> Published:
    published = _publish(settings)
    _registry(settings, published.sample.retrain_requests[0].request_id)
    _shadow_state(settings)
    return published


def test_collect_and_render_from_broker_and_registry(
    settings: Settings, sources: Published
) -> None:
    data = collect(settings, MODEL, idle_s=1.0)
    reports = sources.reports
    assert [r.event_id for r in data.drift_reports] == [r.event_id for r in reports]
    assert data.drift_reports[-1].features[-1].window_shares  # histograms survived the trip
    assert len(data.retrain_requests) == len(data.candidates) == 1
    assert len(data.verdicts) == len(data.promotions) == 1
    assert [m.version for m in data.versions] == [1, 2]
    assert data.aliases["champion"]["version"] == 2
    assert [r["version"] for r in data.shadow_runs] == [3]
    assert any("could not be decoded" in n for n in data.notes)

    html = render_report(data)
    for section in SECTION_IDS:
        assert f'<section id="{section}">' in html
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html
    # PSI, KS, drifted share, verdicts, the run in shadow (histograms: drawn by the page)
    assert len(re.findall(r'<svg id="chart-', html)) == 5
    assert html.count("<option ") == len(reports)  # every window in the explorer
    psi = re.search(r'<svg id="chart-psi".*?</svg>', html, re.S)
    assert psi and psi.group(0).count('class="marker"') == 2
    lineage = html.split('<section id="lineage">')[1]
    assert "snap-initial" in lineage and "val_loss=0.4<" in lineage
    assert "1 message(s) on the report topics could not be decoded" in html

    later = collect(settings, MODEL, idle_s=1.0,
                    since=reports[0].window.end_time + timedelta(seconds=1))
    assert [r.event_id for r in later.drift_reports] == [r.event_id for r in reports[1:]]


def test_report_command_writes_the_file(
    settings: Settings, sources: Published, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = typer.Typer()
    app.command()(report_cli.report_command)
    out = tmp_path / "out" / "report.html"
    context = CliContext(settings=settings)
    result = CliRunner().invoke(app, ["--model", MODEL, "--out", str(out), "--idle", "1",
                                      "--since", "2026-04-01T00:00:00"], obj=context)
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert '<section id="lineage">' in html and "events since 2026-04-01 00:00:00" in html
    assert "3 windows" in result.output or "3 windows" in (result.stderr or "")

    bad = CliRunner().invoke(app, ["--model", "../x", "--out", str(out)], obj=context)
    assert bad.exit_code == 2
    bad = CliRunner().invoke(app, ["--model", MODEL, "--since", "last tuesday"], obj=context)
    assert bad.exit_code == 2
    # an unknown model is an error, not an empty report
    unknown = CliRunner().invoke(app, ["--model", "nosuch", "--out", str(tmp_path / "u.html")],
                                 obj=context)
    assert unknown.exit_code == 2 and "unknown model 'nosuch'" in unknown.output
    assert "Traceback" not in unknown.output and not (tmp_path / "u.html").exists()
