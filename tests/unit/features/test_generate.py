"""The generator: determinism, chunking independence, labelling function and drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from services.features.generate import (
    CHUNK,
    FEATURES,
    LABEL,
    DriftSpec,
    Generator,
    GeneratorConfig,
    fraud_probability,
    parse_mix,
    ramp_weight,
)
from streams.codec import decode, encode
from streams.contracts import FeatureEvent, LabelEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_same_seed_same_rows_and_other_seed_differs() -> None:
    a = Generator(GeneratorConfig(seed=7)).history(T0, 3000)
    b = Generator(GeneratorConfig(seed=7)).history(T0, 3000)
    c = Generator(GeneratorConfig(seed=8)).history(T0, 3000)
    pd.testing.assert_frame_equal(a, b)
    assert not a["amount"].equals(c["amount"])


def test_rows_do_not_depend_on_how_many_are_asked_for() -> None:
    gen = Generator(GeneratorConfig(seed=1))
    long = pd.concat(list(gen.rows(1, T0, CHUNK + 100)), ignore_index=True)
    short = pd.concat(list(gen.rows(1, T0, 50)), ignore_index=True)
    pd.testing.assert_frame_equal(long.iloc[:50], short)
    again = pd.concat(list(Generator(GeneratorConfig(seed=1)).rows(1, T0, CHUNK + 100)))
    pd.testing.assert_frame_equal(long, again.reset_index(drop=True))


def test_history_shape_times_and_ids() -> None:
    frame = Generator(GeneratorConfig(seed=2)).history(T0, 2 * CHUNK + 5)
    assert list(frame.columns) == [
        "event_id",
        "card_id",
        "event_timestamp",
        "label_time",
        *FEATURES,
        LABEL,
    ]
    assert len(frame) == 2 * CHUNK + 5
    assert frame["event_id"].is_unique
    assert frame["event_timestamp"].is_monotonic_increasing
    assert frame["event_timestamp"].is_unique
    assert (frame["label_time"] >= frame["event_timestamp"]).all()
    assert frame["event_timestamp"].max() <= pd.Timestamp(T0)
    assert 0.03 < frame[LABEL].mean() < 0.25


def test_labels_follow_the_known_function() -> None:
    frame = Generator(GeneratorConfig(seed=3)).history(T0, 30000)
    p = fraud_probability(frame, seed=3)
    assert abs(frame[LABEL].mean() - p.mean()) < 0.01
    hi = frame[LABEL][p > 0.5].mean()
    lo = frame[LABEL][p < 0.05].mean()
    assert hi > 0.5 > 0.05 > lo


def test_live_events_round_trip_the_wire_format() -> None:
    pairs = list(Generator(GeneratorConfig(seed=4)).live(T0, 20))
    assert len(pairs) == 20
    fe, le = pairs[0]
    assert fe.event_id == le.event_id and fe.event_time >= T0
    assert set(fe.features) == set(FEATURES)
    assert decode(encode(fe), FeatureEvent) == fe
    assert decode(encode(le), LabelEvent) == le
    assert le.event_time >= fe.event_time


def test_missing_rate_gives_nulls() -> None:
    gen = Generator(GeneratorConfig(seed=5, missing_rate=0.2))
    fe, _ = next(iter(gen.live(T0, 1)))
    frame = gen.history(T0, 5000)
    assert 0.15 < frame["amount"].isna().mean() < 0.25
    assert frame["channel"].notna().all()
    assert all(v is None or isinstance(v, float | str) for v in fe.features.values())


def test_ramp_weight_abrupt_and_gradual() -> None:
    t = (
        pd.to_datetime(
            [T0 - timedelta(seconds=1), T0, T0 + timedelta(seconds=5), T0 + timedelta(seconds=20)],
            utc=True,
        )
        .as_unit("ns")
        .asi8
    )
    assert ramp_weight(t, T0, timedelta(0)).tolist() == [0, 1, 1, 1]
    assert ramp_weight(t, T0, timedelta(seconds=10)).tolist() == [0, 0, 0.5, 1]


def test_covariate_shift_moves_features_from_its_start_only() -> None:
    drift = DriftSpec.from_options(
        live_start=T0,
        covariate_features=["amount", "channel"],
        covariate_at=40,
        mean_shift=2.0,
        mix="online=1",
    )
    base = Generator(GeneratorConfig(seed=6)).chunk(1, 0, T0)
    moved = Generator(GeneratorConfig(seed=6, drift=drift)).chunk(1, 0, T0)
    before = base["event_timestamp"] < pd.Timestamp(T0 + timedelta(seconds=40))
    pd.testing.assert_frame_equal(base[before], moved[before])
    after = ~before
    assert moved.loc[after, "amount"].mean() > base.loc[after, "amount"].mean() + 50
    assert (moved.loc[after, "channel"] == "online").all()
    # Derived features follow the shifted base feature.
    np.testing.assert_allclose(moved["amount_log"], np.log1p(moved["amount"]))


def test_concept_shift_changes_labels_not_features() -> None:
    drift = DriftSpec.from_options(live_start=T0, concept_at=0.0)
    base = Generator(GeneratorConfig(seed=9)).chunk(1, 0, T0)
    moved = Generator(GeneratorConfig(seed=9, drift=drift)).chunk(1, 0, T0)
    pd.testing.assert_frame_equal(base[list(FEATURES)], moved[list(FEATURES)])
    assert (base[LABEL] != moved[LABEL]).mean() > 0.05


def test_drift_options_validate() -> None:
    assert parse_mix("online=3,pos=1") == {"online": 0.75, "pos": 0.25}
    with pytest.raises(ValueError):
        parse_mix("online=0")
    with pytest.raises(ValueError, match="unknown feature"):
        DriftSpec.from_options(live_start=T0, covariate_features=["nope"], covariate_at=0)
    with pytest.raises(ValueError, match="needs --mix"):
        DriftSpec.from_options(live_start=T0, covariate_features=["country"], covariate_at=0)
    spec = DriftSpec.from_options(
        live_start=T0,
        covariate_features=["distance_from_home_km"],
        covariate_at=10,
        covariate_ramp=30,
        scale=2.0,
        concept_at=5,
        concept_strength=0.5,
    )
    (shift,) = spec.covariate
    assert shift.start == T0 + timedelta(seconds=10) and shift.ramp == timedelta(seconds=30)
    assert shift.scale == 2.0 and spec.concept is not None and spec.concept.strength == 0.5
    assert DriftSpec.from_options(live_start=T0) == DriftSpec()
