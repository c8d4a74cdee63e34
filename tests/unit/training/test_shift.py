"""Where the inputs moved: covariate evidence against the parent's reference, and the
located start of the new normal (pure; the figures in ``services.training.shift``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.drift.policy import DriftSettings
from services.drift.profile import build_reference_profile
from services.featurespec import FeatureSpec, ModelSpec
from services.training.shift import inputs_moved, locate_shift

NAMES = tuple(f"x{i}" for i in range(6))
SPEC = ModelSpec(model="m", entity="e",
                 features=(*(FeatureSpec(name=n, kind="numeric") for n in NAMES),
                           FeatureSpec(name="kind", kind="categorical")),
                 label="y")
T = "event_timestamp"


def rows(pre: int, post: int, seed: int, shift: float = 1.5, moved: int = 3,
         category_move: bool = False) -> pd.DataFrame:
    """``pre`` rows of the reference's distribution, then ``post`` with the first
    ``moved`` features shifted by ``shift`` sd (and ``kind`` moved from a to b)."""
    rng = np.random.default_rng(seed)
    n = pre + post
    x = rng.standard_normal((n, len(NAMES)))
    x[pre:, :moved] += shift
    frame = pd.DataFrame(x, columns=list(NAMES))
    kinds = np.where(rng.random(n) < 0.7, "a", "b")
    if category_move:
        kinds[pre:] = np.where(rng.random(post) < 0.2, "a", "b")
    frame["kind"] = kinds
    frame.loc[rng.random(n) < 0.05, "x5"] = np.nan  # missing values are a bin of their own
    frame[T] = pd.Timestamp("2026-11-30", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s")
    return frame


@pytest.fixture(scope="module")
def reference():
    return build_reference_profile(rows(3_000, 0, seed=99), SPEC, "parent")


@pytest.mark.parametrize("pre", [500, 20, 3, 0])
def test_the_located_start_leaves_no_pre_change_row_in(reference, pre: int) -> None:
    """Bugs caught: the start at the split without the margin (pre-change rows kept in
    about a fifth of the seeds), the prefix argmax instead of argmin (the start at the
    wrong end), an off-by-one putting the last pre-change row after the split."""
    for seed in range(25):
        frame = rows(pre, 2_000, seed)
        located = locate_shift(frame, reference, ("x0", "x1", "x2"), T)
        assert located.start is not None
        kept_pre = int((frame[T].iloc[:pre] >= located.start).sum())
        assert kept_pre == 0, f"seed {seed}: {kept_pre} pre-change rows kept"
        assert abs(located.split_row - pre) <= 6, f"seed {seed}: split {located.split_row}"
        assert located.split_row + located.margin_rows - pre <= 30  # few post rows lost


def test_the_rows_are_taken_in_event_time_order(reference) -> None:
    """Bug caught: locating over the frame's own row order (a point-in-time join returns
    its rows in no particular order)."""
    frame = rows(300, 1_500, seed=5)
    shuffled = frame.sample(frac=1.0, random_state=1)
    expected = locate_shift(frame, reference, ("x0", "x1", "x2"), T)
    got = locate_shift(shuffled, reference, ("x0", "x1", "x2"), T)
    assert got.start == expected.start and abs(got.split_row - 300) <= 6


def test_a_categorical_move_is_located_too(reference) -> None:
    """Bug caught: categorical features ignored (no feature to locate by: start None)."""
    frame = rows(400, 1_500, seed=7, moved=0, category_move=True)
    located = locate_shift(frame, reference, ("kind",), T)
    assert located.start is not None
    assert (frame[T].iloc[:400] >= located.start).sum() == 0
    assert abs(located.split_row - 400) <= 40


def test_without_a_moved_feature_nothing_is_located(reference) -> None:
    frame = rows(100, 500, seed=1)
    assert locate_shift(frame, reference, (), T).start is None
    assert locate_shift(frame, reference, ("not_a_feature",), T).start is None


def test_a_start_past_every_row_when_no_row_is_surely_after_the_change(reference) -> None:
    """Bug caught: a change among the newest rows (a margin past the last one) falling
    back to the detector's early estimate, pre-change rows and all."""
    frame = rows(1_000, 4, seed=3)
    located = locate_shift(frame, reference, ("x0", "x1", "x2"), T)
    assert located.start is not None and located.start > frame[T].max()


def test_inputs_moved_by_the_drift_policy(reference) -> None:
    """Bugs caught: the evidence taken from a concept change's unmoved inputs (a concept
    episode trained as covariate), or a 1.5 sd move of three of seven features missed."""
    drift = DriftSettings()
    still = inputs_moved(rows(0, 1_500, seed=11, shift=0.0), SPEC, reference, drift, T)
    assert not still.moved and still.rows == 1_500
    moved = inputs_moved(rows(0, 1_500, seed=12), SPEC, reference, drift, T)
    assert moved.moved and set(moved.features) == {"x0", "x1", "x2"}


def ramp(pre: int, ramp_rows: int, post: int, seed: int) -> pd.DataFrame:
    """``pre`` rows as the reference, then the first three features ramped to 1.5 sd over
    ``ramp_rows`` rows, then ``post`` rows at the full move."""
    frame = rows(pre + ramp_rows + post, 0, seed)
    weight = np.clip((np.arange(len(frame)) - pre) / ramp_rows, 0.0, 1.0)
    for name in ("x0", "x1", "x2"):
        frame[name] += 1.5 * weight
    return frame


def test_a_ramp_moves_the_start_on_past_its_middle_and_a_step_does_not(reference) -> None:
    """Bugs caught: the start left halfway up a ramp (its estimate lies where the rows
    become likelier after than before; the rest of the ramp in the reference, which the
    data after it drifts from); a step taken for a ramp (half its rows thrown away)."""
    moved_on, kept_ramp = 0, []
    for seed in range(20):
        frame = ramp(300, 600, 900, seed)
        located = locate_shift(frame, reference, ("x0", "x1", "x2"), T)
        moved_on += located.ramp_rounds > 0
        kept_ramp.append(int((frame[T].iloc[:900] >= located.start).sum()))
    assert moved_on >= 18
    assert np.median(kept_ramp) <= 150  # at most the last quarter of the ramp, typically
    steps = [locate_shift(rows(300, 1_500, seed), reference, ("x0", "x1", "x2"), T)
             for seed in range(20)]
    assert sum(located.ramp_rounds > 0 for located in steps) <= 1
