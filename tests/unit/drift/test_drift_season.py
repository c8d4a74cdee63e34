"""A declared cycle: windows compared with the reference rows of their phase."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from services.cli.main import app
from services.drift.check import check_frame, reference_from_frame
from services.drift.comparison import WindowReference
from services.drift.policy import DriftSettings, Seasonality
from services.drift.season import PhaseRange, ReferenceRows, SeasonalProfiles, window_range
from streams.codec import encode

DAY = 86_400.0
T0 = datetime(2026, 3, 1, tzinfo=UTC)  # a midnight
COLUMNS = [f"x{i}" for i in range(10)]
CYCLIC = [0, 1, 2, 3]
DAILY = Seasonality(period=timedelta(days=1), buckets=24)


def _cyclic(start_s: float, n: int, span_s: float, seed: int, *, shift: float = 0.0,
            hours: tuple[int, ...] | None = None) -> pd.DataFrame:
    """``n`` rows over ``span_s`` seconds from ``T0 + start_s``: 10 standard normal
    features, 4 of them following a daily cycle of 0.6 sd (plus ``shift``); ``hours``
    keeps only rows whose hour of day is listed."""
    rng = np.random.default_rng(seed)
    t = np.round(start_s + np.sort(rng.uniform(0, span_s, n)), 6)
    x = rng.standard_normal((n, len(COLUMNS)))
    x[:, CYCLIC] += 0.6 * np.sin(2 * np.pi * (t % DAY) / DAY)[:, None] + shift
    frame = pd.DataFrame(x, columns=COLUMNS)
    frame["event_timestamp"] = pd.Timestamp(T0) + pd.to_timedelta(np.round(t * 1e6), unit="us")
    if hours is not None:
        frame = frame[frame["event_timestamp"].dt.hour.isin(hours)].reset_index(drop=True)
    return frame


@pytest.fixture(scope="module")
def reference() -> tuple:
    """Four days of the cycle, 120 rows an hour."""
    frame = _cyclic(0.0, 4 * 24 * 120, 4 * DAY, seed=0)
    spec, profile = reference_from_frame(frame, "snap-cyclic", COLUMNS)
    return frame, spec, profile, ReferenceRows.from_frame(frame, spec)


def _live(seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Day six: 12 two-hour windows of 500 rows."""
    return _cyclic(5 * DAY, 12 * 500, DAY, seed=seed, shift=shift)


def test_a_cycle_the_reference_holds_drifts_without_the_setting_and_not_with_it(
        reference: tuple) -> None:
    frame, spec, profile, rows = reference
    hours = frame["event_timestamp"].dt.hour
    live = _live(1)
    plain = check_frame(live, spec, profile, DriftSettings(), window_size=500, rows=rows)
    phased = check_frame(live, spec, profile, DriftSettings(seasonality=DAILY),
                         window_size=500, rows=rows)
    assert len(plain) == len(phased) == 12
    # the bug: each window holds one phase, the whole reference every phase
    assert sum(r.report.drifted for r in plain) >= 6
    assert any(r.decision.fire for r in plain)
    assert sum(r.report.drifted for r in phased) == 0
    assert not any(r.decision.fire for r in phased)
    assert phased[0].report.reference_phase == (
        f"00:00:00-02:00:00 of 1d ({hours.isin([0, 1]).sum()} reference rows)")
    assert all(r.report.reference_phase and "widened" not in r.report.reference_phase
               and "whole" not in r.report.reference_phase for r in phased)


def test_a_real_shift_in_a_cyclic_stream_still_drifts_with_the_setting(
        reference: tuple) -> None:
    _, spec, profile, rows = reference
    results = check_frame(_live(2, shift=1.5), spec, profile,
                          DriftSettings(seasonality=DAILY), window_size=500, rows=rows)
    assert all(r.report.drifted for r in results)
    assert {f.name for f in results[0].report.features if f.drifted} == {
        COLUMNS[i] for i in CYCLIC}
    assert any(r.decision.fire for r in results)


def test_a_window_across_midnight_is_compared_with_both_ends_of_the_day(
        reference: tuple) -> None:
    frame, spec, profile, rows = reference
    start = T0 + timedelta(days=5, hours=23, minutes=10)
    phase = window_range(start, start + timedelta(minutes=100), DAILY)
    assert (phase.first, phase.count) == (23, 2)
    assert phase.label() == "23:00:00-01:00:00 of 1d"
    choice = SeasonalProfiles(profile, spec, rows, DAILY).select(
        start, start + timedelta(minutes=100))
    hours = frame["event_timestamp"].dt.hour
    expected = int(hours.isin([23, 0]).sum())
    assert choice.rows == choice.profile.n_rows == expected
    assert not choice.widened
    # the reference's rows of 23:00-01:00 only: their cycle mean is near 0 (sin ~ 0)
    mean = np.mean([p.sample.mean() for p in choice.profile.numeric[:4]])
    assert abs(mean) < 0.15
    window = _cyclic(5 * DAY + 23 * 3600 + 600, 500, 6000, seed=3)
    result = check_frame(window, spec, profile, DriftSettings(seasonality=DAILY),
                         rows=rows)[0]
    assert not result.report.drifted
    assert result.report.reference_phase == (
        f"23:00:00-01:00:00 of 1d ({expected} reference rows)")


def test_a_range_with_too_few_rows_widens_one_bucket_each_side(reference: tuple) -> None:
    _, spec, _, _ = reference
    # hours 9 to 11 hold 20 rows an hour, the others 120
    sparse = _cyclic(0.0, 4 * 24 * 20, 4 * DAY, seed=4, hours=(9, 10, 11))
    dense = _cyclic(0.0, 4 * 24 * 120, 4 * DAY, seed=5,
                    hours=tuple(h for h in range(24) if h not in (9, 10, 11)))
    frame = pd.concat([sparse, dense], ignore_index=True)
    _, profile = reference_from_frame(frame, "snap-sparse", COLUMNS)
    rows = ReferenceRows.from_frame(frame, spec)
    season = Seasonality(period=timedelta(days=1), buckets=24, min_reference_rows=400)
    profiles = SeasonalProfiles(profile, spec, rows, season)
    start = T0 + timedelta(days=6, hours=10, minutes=5)
    choice = profiles.select(start, start + timedelta(minutes=50))
    assert (choice.asked.first, choice.asked.count) == (10, 1)
    # 10:00-11:00 holds about 80 rows, 09:00-12:00 about 240: two widenings, 8:00-13:00
    assert (choice.range.first, choice.range.count) == (8, 5)
    assert profiles.rows_in(PhaseRange(9, 3, 24, DAY)) < 400 <= choice.rows
    assert choice.widened and choice.profile.n_rows == choice.rows
    assert choice.label().endswith("widened from 10:00:00-11:00:00 of 1d")
    assert choice.label().startswith("08:00:00-13:00:00 of 1d (")


def test_too_few_rows_in_the_whole_reference_means_the_whole_reference(
        reference: tuple) -> None:
    frame, spec, profile, rows = reference
    season = Seasonality(period=timedelta(days=1), buckets=24,
                         min_reference_rows=len(frame) + 1)
    choice = SeasonalProfiles(profile, spec, rows, season).select(T0, T0 + timedelta(hours=1))
    assert choice.range.whole and choice.profile is profile
    assert choice.label().startswith("whole cycle of 1d")


def test_a_window_spanning_the_period_is_compared_with_the_whole_reference(
        reference: tuple) -> None:
    _, spec, profile, rows = reference
    live = _live(6)
    plain = check_frame(live, spec, profile, DriftSettings(), rows=rows)[0]
    phased = check_frame(live, spec, profile, DriftSettings(seasonality=DAILY), rows=rows)[0]
    assert phased.report.reference_phase == (
        f"whole cycle of 1d ({len(rows)} reference rows)")
    assert [f.psi for f in phased.report.features] == [f.psi for f in plain.report.features]


def test_phase_profiles_are_built_once_per_range(reference: tuple) -> None:
    _, spec, profile, rows = reference
    compare = WindowReference(profile, spec, seasonality=DAILY, rows=rows)
    day = T0 + timedelta(days=7)
    first = compare.for_window(day, day + timedelta(minutes=90))
    again = compare.for_window(day + timedelta(days=3, minutes=10),
                               day + timedelta(days=3, minutes=100))
    assert again.engine is first.engine and again.summaries is first.summaries
    other = compare.for_window(day + timedelta(hours=5), day + timedelta(hours=5, minutes=30))
    assert other.engine is not first.engine


def test_without_a_cycle_the_report_has_no_phase_field(reference: tuple) -> None:
    _, spec, profile, rows = reference
    report = check_frame(_live(7), spec, profile, DriftSettings(), window_size=500,
                         rows=rows)[0].report
    assert b"reference_phase" not in encode(report)
    phased = check_frame(_live(7), spec, profile, DriftSettings(seasonality=DAILY),
                         window_size=500, rows=rows)[0].report
    assert b'"reference_phase":"00:00:00-02:00:00 of 1d' in encode(phased)


def test_a_cycle_without_reference_times_falls_back_to_the_whole_reference(
        reference: tuple, caplog: pytest.LogCaptureFixture) -> None:
    _, spec, profile, _ = reference
    with caplog.at_level(logging.ERROR):
        compare = WindowReference(profile, spec, seasonality=DAILY, rows=None)
    assert "no event times" in caplog.text
    assert compare.for_window(T0, T0 + timedelta(hours=1)).phase is None


def test_a_cycle_needs_the_inputs_times(reference: tuple) -> None:
    _, spec, profile, rows = reference
    live = _live(8).drop(columns=["event_timestamp"])
    with pytest.raises(ValueError, match="no event-time column 'event_timestamp'"):
        check_frame(live, spec, profile, DriftSettings(seasonality=DAILY), rows=rows)
    with pytest.raises(KeyError, match="no event-time column 'ts'"):
        ReferenceRows.from_frame(live, spec, "ts")


def test_seasonality_settings_are_checked() -> None:
    assert DriftSettings().seasonality is None
    parsed = DriftSettings.model_validate({"seasonality": {"period": "P7D", "buckets": 168}})
    assert parsed.seasonality is not None and parsed.seasonality.period_s == 7 * DAY
    assert parsed.seasonality.min_reference_rows == 200
    for bad in ({"period": "PT0S"}, {"period": "-P1D"}, {"period": "P1D", "buckets": 0},
                {"period": "P1D", "min_reference_rows": 0}, {"period": "P1D", "bucket": 3},
                {"buckets": 24}):
        with pytest.raises(ValidationError):
            DriftSettings.model_validate({"seasonality": bad})


def test_weekly_labels_name_the_day() -> None:
    weekly = Seasonality(period=timedelta(days=7), buckets=14)
    start = datetime(1970, 1, 3, 13, tzinfo=UTC) + timedelta(weeks=2900)  # phase: epoch
    assert window_range(start, start + timedelta(hours=2), weekly).label() == (
        "2d 12:00:00-3d 00:00:00 of 7d")


def test_drift_check_applies_the_models_declared_cycle(tmp_path: Path,
                                                      reference: tuple) -> None:
    frame = reference[0]
    ref, win = tmp_path / "ref.parquet", tmp_path / "live.parquet"
    frame.to_parquet(ref)
    _live(9).to_parquet(win)
    config = tmp_path / "driftloop.yaml"
    config.write_text("models:\n  cyc:\n    drift:\n      seasonality: {period: P1D}\n")
    args = ["drift", "check", "--model", "cyc", "--reference", str(ref), "--input", str(win),
            "--window-size", "500", "--json"]
    plain = CliRunner().invoke(app, args)
    phased = CliRunner().invoke(app, ["--config", str(config), *args])
    assert plain.exit_code == phased.exit_code == 0, (plain.output, phased.output)

    def reports(output: str) -> list[dict]:
        return [json.loads(line)["report"] for line in output.splitlines()
                if line.startswith("{")]

    assert sum(r["drifted"] for r in reports(plain.output)) >= 6
    assert all("reference_phase" not in r for r in reports(plain.output))
    assert [r["drifted"] for r in reports(phased.output)] == [False] * 12
    assert reports(phased.output)[0]["reference_phase"].startswith("00:00:00-0")
    frame.drop(columns=["event_timestamp"]).to_parquet(ref)
    untimed = CliRunner().invoke(app, ["--config", str(config), *args])
    assert untimed.exit_code == 2 and "no event-time column" in untimed.output
