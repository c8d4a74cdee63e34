from __future__ import annotations

import pandas as pd
import pytest

from services.training.data import build_training_frames, replay_sample, time_split
from services.training.synthetic import synthetic_frame, synthetic_spec

SPEC = synthetic_spec(n_numeric=2, n_categorical=1)


def test_time_split_is_by_event_time_without_boundary_leak() -> None:
    times = pd.to_datetime(
        [
            "2026-01-01 00:00",
            "2026-01-01 00:01",
            "2026-01-01 00:01",
            "2026-01-01 00:02",
            "2026-01-01 00:00",
        ],
        utc=True,
    )
    frame = pd.DataFrame({"t": times, "v": range(5)})
    train, val = time_split(frame, "t", 0.5)
    assert train["t"].max() < val["t"].min()
    assert len(train) + len(val) == 5


def test_replay_share_and_labelled_only() -> None:
    fresh = synthetic_frame(800, SPEC, seed=1, shift=1.0, start="2026-02-01")
    fresh.loc[fresh.index[:100], "label"] = None  # unlabelled rows are dropped
    old = synthetic_frame(2000, SPEC, seed=2)
    train, val = build_training_frames(
        SPEC,
        fresh,
        old,
        replay_ratio=0.3,
        validation_share=0.2,
        time_column="event_timestamp",
        seed=0,
    )
    both = pd.concat([train, val])
    assert both["label"].notna().all()
    share = (both["_source"] == "replay").mean()
    assert share == pytest.approx(0.3, abs=0.01)
    # both sources appear in validation (forgetting is measured too)
    assert set(val["_source"]) == {"fresh", "replay"}
    for source in ("fresh", "replay"):
        t = train[train["_source"] == source]["event_timestamp"]
        v = val[val["_source"] == source]["event_timestamp"]
        assert t.max() < v.min()


def test_replay_capped_by_snapshot_size() -> None:
    old = synthetic_frame(10, SPEC, seed=2)
    assert len(replay_sample(1000, old, 0.5, seed=0)) == 10
    assert len(replay_sample(1000, old, 0.0, seed=0)) == 0


def test_rows_with_infinite_features_are_dropped_and_counted_labels_are_kept() -> None:
    from services.training.data import DROPPED_ATTR

    fresh = synthetic_frame(400, SPEC, seed=1, start="2026-02-01")
    numeric = [f.name for f in SPEC.numeric]
    fresh.loc[fresh.index[3], numeric[0]] = float("inf")
    fresh.loc[fresh.index[7], numeric[1]] = -float("inf")
    fresh.loc[fresh.index[9], numeric[1]] = float("nan")  # missing, imputed: kept
    old = synthetic_frame(400, SPEC, seed=2)
    old.loc[old.index[:5], numeric[0]] = 1e308 * 10  # overflowed to inf
    fresh.loc[fresh.index[11], "label"] = float("inf")  # a bad label: the task check refuses it
    train, val = build_training_frames(
        SPEC, fresh, old, replay_ratio=0.5, validation_share=0.2,
        time_column="event_timestamp", seed=0,
    )
    assert train.attrs[DROPPED_ATTR] == 2 + 5
    both = pd.concat([train, val])
    assert (both["_source"] == "fresh").sum() == 398
    assert (both["label"] == float("inf")).sum() == 1
    values = both[numeric].to_numpy(dtype=float)
    assert not (values == float("inf")).any() and not (values == -float("inf")).any()
