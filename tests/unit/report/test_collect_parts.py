"""The collector's non-Kafka parts: --since parsing, thresholds from the settings, the
shadow book's running candidates (real ShadowBook JSON), lineage from a real registry,
and the SVG helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from services.drift.policy import DriftPolicy
from services.registry.manifest import Lineage
from services.registry.store import ModelRegistry
from services.report.collect import drift_thresholds, load_lineage, load_shadow_runs, parse_since
from services.report.render import Thresholds
from services.report.svg import Series, bar_chart, line_chart, nice_ticks
from services.shadow.book import ShadowBook
from services.shadow.decision import ShadowPolicy
from services.shadow.pairing import Pair
from streams.settings import load_settings

NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("6h", NOW - timedelta(hours=6)),
        ("1.5d", NOW - timedelta(hours=36)),
        ("2w", NOW - timedelta(days=14)),
        ("90s", NOW - timedelta(seconds=90)),
        ("2026-03-30T08:00:00", datetime(2026, 3, 30, 8, tzinfo=UTC)),
        ("2026-03-30T08:00:00+02:00", datetime(2026, 3, 30, 6, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "5y", "-3h", ""])
def test_parse_since_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_since(text, NOW)


def test_thresholds_follow_the_model_drift_options() -> None:
    s = load_settings(models={"m": {"drift": {"psi_threshold": 0.3, "ks_min_statistic": 0.2,
                                              "consecutive_windows": 3}}})
    d = DriftPolicy()
    defaults = Thresholds(d.psi_threshold, d.ks_min_statistic, d.ks_alpha, d.drifted_share)
    assert drift_thresholds(s, "m") == (
        Thresholds(0.3, 0.2, d.ks_alpha, d.drifted_share), None)
    assert drift_thresholds(s, "other") == (defaults, None)
    with pytest.raises(ValidationError, match="psi_threshold"):  # refused at load time
        load_settings(models={"m": {"drift": {"psi_threshold": -1}}})


def test_shadow_runs_from_the_book_json(tmp_path: Path) -> None:
    policy = ShadowPolicy(min_pairs=30, look_every=30, max_pairs=120)
    book = ShadowBook(policy)
    book.add_candidate("m", 3, 2, "req-3", "reg/m/3", "ab" * 32, champion=2, now=NOW)
    book.add_candidate("other", 5, 4, "req-5", "reg/o/5", "ab" * 32, champion=4, now=NOW)
    for i in range(75):
        book.add_pair("m", Pair(f"e{i}", 1.0, 0.5 + (i % 3) * 0.1, {3: 0.4}))
    path = tmp_path / "book.json"
    path.write_text(book.to_json())
    runs, note = load_shadow_runs(path, "m")
    assert note is None and [r["version"] for r in runs] == [3]
    assert [s["n"] for s in runs[0]["snapshots"]] == [30, 60]
    assert runs[0]["moments"]["n"] == 75
    assert runs[0]["moments"]["mean_candidate"] == pytest.approx(0.4)
    assert load_shadow_runs(tmp_path / "absent.json", "m") == ([], None)
    (tmp_path / "broken.json").write_text("{not json")
    runs, note = load_shadow_runs(tmp_path / "broken.json", "m")
    assert runs == [] and note and "unreadable" in note


def test_lineage_from_a_registry(tmp_path: Path) -> None:
    registry = ModelRegistry(str(tmp_path / "registry"))
    weights = {"w": torch.zeros(2)}
    for parent in (None, 1):
        registry.register(
            "m", state_dict=weights, preprocessing={}, model_meta={},
            lineage=Lineage(training_snapshot_id=f"snap-{parent}", parent_version=parent,
                            request_id=f"req-{parent}" if parent else None),
            hyperparameters={}, metrics={"val_loss": 0.5}, seeds={},
        )
    registry.set_alias("m", "champion", 1, expected=None)
    registry.set_alias("m", "champion", 2, expected=1)
    versions, aliases = load_lineage(registry, "m")
    assert [m.version for m in versions] == [1, 2]
    assert versions[1].lineage.parent_version == 1
    assert versions[1].lineage.request_id == "req-1"
    assert aliases["champion"]["version"] == 2 and aliases["champion"]["previous"] == 1
    assert load_lineage(registry, "unknown") == ([], {})


def test_nice_ticks() -> None:
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 0.33) == [0, 0.1, 0.2, 0.3]
    assert nice_ticks(1, 1) == [1]


def test_charts_escape_text_and_handle_no_data() -> None:
    svg = bar_chart("c", "t<", ["<b>"], [("s&", "#000", [0.5])])
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "s&amp;" in svg
    assert 'class="chart empty"' in line_chart("e", "x", [], time_axis=True)
    line = line_chart("l", "x", [Series("<i>", [(0, 1.0), (1, float("nan")), (2, 3.0)], "#f00")],
                      time_axis=False)
    assert "<i>" not in line and line.count("<circle") == 2  # NaN skipped
