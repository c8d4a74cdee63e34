"""``drift check --reference``: which columns are compared, and every policy number applied.

The files look like the project's own snapshots: ``event_id``, ``card_id``,
``event_timestamp``, a ``label_time`` and the label ``is_fraud`` next to the features.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from services.cli.main import app
from services.drift.check import check_frame, feature_columns, reference_from_frame
from services.drift.policy import DriftSettings, decide_window, evaluate_window
from services.drift.stats import WindowStatsEngine
from services.drift.trigger import RetrainTrigger

T0 = datetime(2026, 2, 1, tzinfo=UTC)
SHIFTED = ("amount", "velocity", "distance")


def snapshot_like(n: int, seed: int, shift: float = 0.0, start: datetime = T0) -> pd.DataFrame:
    """Rows shaped like a snapshot: ids, times, label, 5 numeric + 1 categorical feature."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "event_id": [f"e{seed}-{i}" for i in range(n)],
        "card_id": [f"card-{i % 97:04d}" for i in range(n)],
        "event_timestamp": pd.date_range(start, periods=n, freq="s", tz="UTC"),
        "label_time": pd.date_range(start + timedelta(seconds=30), periods=n, freq="s",
                                    tz="UTC"),
    })
    for name in ("amount", "velocity", "distance", "age", "balance"):
        frame[name] = rng.normal(shift if name in SHIFTED else 0.0, 1.0, size=n)
    frame["channel"] = rng.choice(["online", "pos", "atm"], size=n)
    # ids that change per row would look drifted if they were compared
    frame["is_fraud"] = (rng.random(n) < 0.1).astype(int)
    return frame


def test_ids_times_and_labels_are_left_out() -> None:
    frame = snapshot_like(10, seed=1)
    kept, left = feature_columns(frame)
    assert kept == ["amount", "velocity", "distance", "age", "balance", "channel"]
    assert left == ["event_id", "card_id", "event_timestamp", "label_time", "is_fraud"]
    chosen, _ = feature_columns(frame, features=["amount", "channel"])
    assert chosen == ["amount", "channel"]
    with pytest.raises(KeyError, match="nope"):
        feature_columns(frame, features=["nope"])


def _write(tmp_path: Path) -> tuple[Path, Path]:
    reference = snapshot_like(6000, seed=1)
    window = pd.concat([snapshot_like(2000, seed=2, start=T0 + timedelta(days=1)),
                        snapshot_like(2000, seed=3, shift=1.5,
                                      start=T0 + timedelta(days=1, hours=1))],
                       ignore_index=True)
    ref_path, win_path = tmp_path / "ref.parquet", tmp_path / "window.parquet"
    reference.to_parquet(ref_path)
    window.to_parquet(win_path)
    return ref_path, win_path


def test_a_shifted_window_is_flagged_and_fails_with_status_3(tmp_path: Path) -> None:
    ref, win = _write(tmp_path)
    runner = CliRunner()
    args = ["drift", "check", "--reference", str(ref), "--input", str(win),
            "--window-size", "2000", "--json"]
    calm = runner.invoke(app, args)
    assert calm.exit_code == 0, calm.output
    windows = [json.loads(line) for line in calm.stdout.splitlines()]
    assert [w["report"]["drifted"] for w in windows] == [False, True]
    drifted = {f["name"] for f in windows[1]["report"]["features"] if f["drifted"]}
    assert drifted == set(SHIFTED)  # 3 of 6 features: above the 0.3 share
    assert max(f["psi"] for f in windows[1]["report"]["features"]) > 0.2
    assert [w["trigger"]["outcome"] for w in windows] == ["calm", "streak"]
    assert "comparing 6 columns: amount, velocity, distance, age, balance, channel" in (
        calm.stderr)
    failed = runner.invoke(app, [*args, "--fail-on-drift"])
    assert failed.exit_code == 3
    same = runner.invoke(app, ["drift", "check", "--reference", str(ref), "--input", str(ref),
                               "--fail-on-drift"])
    assert same.exit_code == 0, same.output


def test_the_models_configured_policy_applies_and_options_override_it(tmp_path: Path) -> None:
    ref, win = _write(tmp_path)
    config = tmp_path / "driftloop.yaml"
    config.write_text("models:\n  fraud:\n    drift:\n      drifted_share: 0.9\n")
    args = ["--config", str(config), "drift", "check", "--model", "fraud",
            "--reference", str(ref), "--input", str(win), "--window-size", "2000",
            "--fail-on-drift"]
    relaxed = CliRunner().invoke(app, args)
    assert relaxed.exit_code == 0, relaxed.output  # 3 of 6 drifted < the model's 0.9
    strict = CliRunner().invoke(app, [*args, "--drifted-share", "0.5"])
    assert strict.exit_code == 3, strict.output


def test_small_windows_are_reported_but_never_trigger() -> None:
    reference = snapshot_like(4000, seed=1)
    window = snapshot_like(600, seed=4, shift=2.0, start=T0 + timedelta(days=1))
    columns, _ = feature_columns(reference)
    spec, profile = reference_from_frame(reference, "ref", columns)
    drift = DriftSettings(consecutive_windows=1, min_window_events=250)
    results = check_frame(window, spec, profile, drift, window_size=300)
    assert [r.report.drifted for r in results] == [True, True]
    assert [r.decision.outcome for r in results] == ["fire", "in_flight"]
    small = check_frame(window.iloc[:200], spec, profile, drift, window_size=200)
    assert small[0].report.drifted and small[0].decision.outcome == "too_small"
    assert not small[0].decision.fire


def test_decide_window_keeps_small_windows_out_of_the_streak() -> None:
    reference = snapshot_like(4000, seed=1)
    columns, _ = feature_columns(reference)
    spec, profile = reference_from_frame(reference, "ref", columns)
    drift = DriftSettings(consecutive_windows=2, min_window_events=100)
    engine = WindowStatsEngine(profile, spec)
    shifted = snapshot_like(300, seed=5, shift=2.0)
    numeric = shifted[[f.name for f in spec.numeric]].to_numpy(dtype=float)
    verdict = evaluate_window(engine.compute(numeric, {"channel": list(shifted["channel"])}),
                              spec, drift)
    assert verdict.drifted
    trigger = RetrainTrigger(drift.trigger_config())
    outcomes = [decide_window(trigger, drift, verdict, n_events=n, window_end=T0,
                              window_id=f"w{i}", request_id=f"r{i}").outcome
                for i, n in enumerate([300, 50, 300])]
    assert outcomes == ["streak", "too_small", "fire"]
