"""The trainer's "still moving?" check: the newer half of the fresh rows against the older.

Synthetic frames with known shapes (independently of the drift code): stationary, a
linear ramp, a step inside the window, a step before it. Each case fixes what the
check must say; the drift settings are the product defaults.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from services.drift.policy import DriftSettings
from services.drift.profile import infer_spec
from services.training.settle import MIN_HALF_ROWS, check_settled

T0 = datetime(2026, 5, 1, tzinfo=UTC)
FEATURES = ("a", "b", "c", "d", "e")
MOVED = ("a", "b", "c")


def _frame(n: int, shift: np.ndarray, seed: int) -> pd.DataFrame:
    """``n`` rows one second apart; the ``MOVED`` columns shifted by ``shift`` sd per row."""
    rng = np.random.default_rng(seed)
    data = {name: rng.normal(size=n) for name in FEATURES}
    for name in MOVED:
        data[name] = data[name] + shift
    data["channel"] = rng.choice(["web", "pos", "app"], size=n)
    frame = pd.DataFrame(data)
    frame.insert(0, "event_timestamp", [T0 + timedelta(seconds=i) for i in range(n)])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # any order


def _check(frame: pd.DataFrame) -> object:
    spec = infer_spec(frame[[*FEATURES, "channel"]], model="m")
    return check_settled(frame, spec, DriftSettings(), "event_timestamp")


@pytest.mark.parametrize("seed", range(5))
def test_rows_from_one_distribution_are_settled(seed: int) -> None:
    """Catches a check that calls any window moving (every attempt would wait out its
    rounds; an abrupt change would never train at once)."""
    settling = _check(_frame(1_000, np.zeros(1_000), seed))
    assert not settling.moving and settling.drifted == ()
    assert settling.older_rows == settling.newer_rows == 500


@pytest.mark.parametrize("seed", range(3))
def test_a_ramp_still_going_is_moving_and_split_at_the_median_time(seed: int) -> None:
    """The benchmark's gradual drift (1.5 sd on three inputs over the ramp), half of it
    inside the fresh rows. Catches a ramp trained on as if settled, a split elsewhere
    than the median event time (the newer half must start the next attempt)."""
    n = 1_000
    settling = _check(_frame(n, np.linspace(0.0, 0.75, n), seed))
    assert settling.moving
    assert settling.split == T0 + timedelta(seconds=n // 2)
    assert set(settling.drifted) <= set(MOVED) and settling.drifted


def test_pre_change_rows_in_the_older_half_are_moved_past() -> None:
    """A change point estimated a window early: the first 20% of the rows are from
    before a 1.5 sd step. Catches the early rows kept in the drift reference."""
    n = 1_000
    shift = np.where(np.arange(n) < n // 5, 0.0, 1.5)
    assert _check(_frame(n, shift, 7)).moving


def test_rows_all_after_a_step_are_settled() -> None:
    """The abrupt shift with a right change point: every row is post-step (1.5 sd).
    Catches the level itself taken for movement."""
    assert not _check(_frame(1_000, np.full(1_000, 1.5), 8)).moving


def test_too_few_rows_to_tell_are_settled() -> None:
    """Under ``MIN_HALF_ROWS`` a half: no verdict, no split (train as is). Catches a
    tiny window sent waiting on noise."""
    settling = _check(_frame(2 * MIN_HALF_ROWS - 1, np.linspace(0, 3, 2 * MIN_HALF_ROWS - 1), 9))
    assert not settling.moving and settling.split is None
