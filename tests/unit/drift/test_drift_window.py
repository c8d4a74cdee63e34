"""Window accumulation, the drift report and the file check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from services.cli.drift import app
from services.drift.check import check_frame, reference_from_frame
from services.drift.policy import DriftPolicy, evaluate_window
from services.drift.report import build_drift_report, retrain_request_id, window_key
from services.drift.stats import FeatureStats
from services.drift.window import WindowAccumulator
from services.featurespec import FeatureSpec, ModelSpec
from streams.contracts import DriftReport, WindowBounds

SPEC = ModelSpec(
    "m",
    "e",
    (FeatureSpec("a", "numeric"), FeatureSpec("b", "numeric"), FeatureSpec("c", "categorical")),
)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_window_closes_by_count() -> None:
    acc = WindowAccumulator(SPEC, max_events=3, max_seconds=60)
    out = []
    for i in range(7):
        w = acc.add(
            T0 + timedelta(seconds=i), {"a": i, "b": None, "c": "x"}, "features", i % 2, 100 + i
        )
        if w:
            out.append(w)
    assert [w.n_events for w in out] == [3, 3] and acc.n_open == 1
    w = out[0]
    assert w.numeric.shape == (3, 2) and np.isnan(w.numeric[:, 1]).all()
    assert w.numeric[:, 0].tolist() == [0.0, 1.0, 2.0]
    assert w.categorical == {"c": ["x", "x", "x"]}
    assert [(r.partition, r.first_offset, r.last_offset) for r in w.bounds.offsets] == [
        (0, 100, 102),
        (1, 101, 101),
    ]
    assert w.bounds.start_time == T0 and w.bounds.end_time == T0 + timedelta(seconds=2)
    assert acc.open_first_offsets() == {("features", 0): 106}
    last = acc.flush()
    assert last is not None and last.n_events == 1 and acc.flush() is None


def test_window_closes_by_event_time() -> None:
    acc = WindowAccumulator(SPEC, max_events=1_000, max_seconds=60)
    assert acc.add(T0, {"a": 1.0}) is None
    assert acc.add(T0 + timedelta(seconds=59.9), {"a": 2.0}) is None
    closed = acc.add(T0 + timedelta(seconds=60), {"a": 3.0})  # opens the next window
    assert closed is not None and closed.n_events == 2 and acc.n_open == 1
    assert closed.categorical["c"] == [None, None]


def test_invalid_numeric_values_count_as_missing() -> None:
    acc = WindowAccumulator(SPEC, max_events=2)
    acc.add(T0, {"a": "oops", "b": 1.0, "c": None})
    w = acc.add(T0, {"a": 2.0, "b": float("inf"), "c": "y"})
    assert w is not None and w.invalid == 2
    assert w.invalid_by_feature == {"a": 1, "b": 1}
    assert np.isnan(w.numeric[0, 0]) and np.isnan(w.numeric[1, 1])
    assert w.numeric[1, 0] == 2.0 and w.numeric[0, 1] == 1.0


def test_non_finite_values_without_strings_are_invalid_per_feature() -> None:
    acc = WindowAccumulator(SPEC, max_events=3)
    acc.add(T0, {"a": float("-inf"), "b": 1.0})
    acc.add(T0, {"a": float("inf"), "b": None})
    w = acc.add(T0, {"a": 1.0, "b": float("inf")})
    assert w is not None and w.invalid_by_feature == {"a": 2, "b": 1}
    assert np.isfinite(w.numeric).sum() == 2


def test_far_and_odd_timezone_times_do_not_crash_the_window() -> None:
    plus14 = timezone(timedelta(hours=14))
    acc = WindowAccumulator(SPEC, max_events=10)
    assert acc.add(datetime(1, 1, 1, tzinfo=plus14), {"a": 1.0}) is None  # year 0 in UTC
    first = acc.add(datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))),
                    {"a": 1.0})
    assert first is not None and first.n_events == 1
    assert first.bounds.start_time.year == 1  # clamped into what datetime can hold
    last = acc.flush()
    assert last is not None and last.bounds.end_time.year == 9999


def test_naive_and_epoch_times() -> None:
    acc = WindowAccumulator(SPEC, max_events=2)
    acc.add(datetime(2026, 3, 1), {"a": 1.0})
    w = acc.add(T0.timestamp() + 1.0, {"a": 1.0})
    assert w is not None and w.bounds.start_time == T0


def _verdict() -> object:
    stats = [
        FeatureStats("a", "numeric", 0.3, 0.2, 1e-9, 0.0),
        FeatureStats("b", "numeric", 0.01, 0.01, 0.5, 0.1),
        FeatureStats("c", "categorical", 0.0, None, None, 0.0),
    ]
    return evaluate_window(stats, SPEC, DriftPolicy())


def test_report_shape_and_ids() -> None:
    acc = WindowAccumulator(SPEC, max_events=2)
    acc.add(T0, {"a": 1.0}, "features", 0, 5)
    w = acc.add(T0, {"a": 1.0}, "features", 1, 9)
    assert w is not None
    report = build_drift_report("m", w.bounds, _verdict(), "snap")
    decoded = msgspec.json.decode(msgspec.json.encode(report), type=DriftReport)
    assert decoded == report
    assert [f.drifted for f in report.features] == [True, False, False]
    assert report.features[0].bins == []  # the hand-made stats carry no histogram
    assert report.drifted  # 1 of 3 >= 30%
    again = build_drift_report("m", w.bounds, _verdict(), "snap")
    assert again.event_id == report.event_id  # same window, same id
    key = window_key(w.bounds)
    assert key == "features:0:5-5;features:1:9-9"
    rid = retrain_request_id("m", "snap", key)
    assert len(rid) == 32 and rid == retrain_request_id("m", "snap", key)
    assert rid != retrain_request_id("m", "snap2", key)
    no_offsets = WindowBounds(start_time=T0, end_time=T0, n_events=3)
    assert window_key(no_offsets).endswith("/3")


def _frames(shift: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 6_000
    ref = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y"], n)}
    )
    cur = pd.DataFrame(
        {
            "a": rng.normal(shift, 1, size=n),
            "b": rng.normal(size=n),
            "c": rng.choice(["x", "y"], n),
            "event_time": pd.date_range(T0, periods=n, freq="s"),
        }
    )
    return ref, cur


def test_check_frame_windows_and_trigger() -> None:
    ref, cur = _frames(1.0)
    spec, profile = reference_from_frame(ref, "ref-1", list(ref.columns))
    results = check_frame(cur, spec, profile, window_size=2_000, time_column="event_time")
    assert [r.report.window.n_events for r in results] == [2_000] * 3
    assert all(r.report.drifted for r in results)
    assert [r.decision.outcome for r in results] == ["streak", "fire", "streak"]
    assert results[0].report.window.start_time == T0


def test_cli_reference_json(tmp_path: Path) -> None:
    ref, cur = _frames(0.0)
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    runner = CliRunner()
    args = [
        "check",
        "--input",
        str(tmp_path / "cur.parquet"),
        "--reference",
        str(tmp_path / "ref.parquet"),
    ]
    res = runner.invoke(app, [*args, "--json", "--window-size", "3000", "--psi-threshold", "0.5",
                              "--time-column", "event_time"])
    assert res.exit_code == 0, res.output
    windows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [w["trigger"]["outcome"] for w in windows] == ["calm", "calm"]
    lines = [w["report"] for w in windows]
    assert len(lines) == 2 and lines[0]["schema"] == "drift_report/1"
    assert [f["name"] for f in lines[0]["features"]] == ["a", "b", "c"]
    hist = lines[0]["features"][2]
    assert hist["bins"] == ["x", "y", "other", "missing"]
    assert len(hist["reference_shares"]) == len(hist["window_shares"]) == 4
    assert len(lines[0]["features"][0]["bins"]) == 11  # 10 quantile bins + missing
    assert not any(line["drifted"] for line in lines)
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "PSI" in res.stdout
    res = runner.invoke(app, ["check", "--input", str(tmp_path / "cur.parquet")])
    assert res.exit_code == 2


def test_check_rejects_empty_input() -> None:
    ref, cur = _frames(0.0)
    spec, profile = reference_from_frame(ref, "r", list(ref.columns))
    with pytest.raises(ValueError):
        check_frame(cur.iloc[:0], spec, profile)


def test_single_and_no_numeric_features() -> None:
    one = ModelSpec("m", "e", (FeatureSpec("a", "numeric"),))
    acc = WindowAccumulator(one, max_events=2)
    acc.add(T0, {"a": 1.5})
    w = acc.add(T0, {})
    assert w is not None and w.numeric.shape == (2, 1) and np.isnan(w.numeric[1, 0])
    cats = ModelSpec("m", "e", (FeatureSpec("c", "categorical"),))
    acc = WindowAccumulator(cats, max_events=2)
    acc.add(T0, {"c": "x"})
    w = acc.add(T0, {"c": None})
    assert w is not None and w.numeric.shape == (2, 0) and w.categorical == {"c": ["x", None]}


def test_episode_request_id_follows_the_models_latest_request() -> None:
    from services.drift.report import episode_request_id

    first = episode_request_id("m", "snap", None)
    assert len(first) == 32 and first == episode_request_id("m", "snap", None)
    second = episode_request_id("m", "snap", first)
    assert second not in {first, episode_request_id("m", "snap", "other")}
    assert first != episode_request_id("m2", "snap", None)
    assert first != episode_request_id("m", "snap2", None)
