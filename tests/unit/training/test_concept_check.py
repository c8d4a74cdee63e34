"""Whether a concept alarm holds for the champion: its loss rose after the change point."""

from __future__ import annotations

import numpy as np

from services.training.concept import MIN_ROWS, loss_rose


def test_a_loss_that_rose_holds_and_one_that_did_not_is_dismissed() -> None:
    """Bugs caught: the test the wrong way round (a loss that fell taken as a change),
    two-sided (a fall dismissed the same as a rise is confirmed), or too eager (a
    stationary loss confirmed in most seeds)."""
    rng = np.random.default_rng(0)
    before = rng.exponential(0.5, 400)
    rose = loss_rose(before, rng.exponential(0.8, 400))
    assert rose.rose and rose.after > rose.before and rose.p_value < 0.01
    fell = loss_rose(before, rng.exponential(0.3, 400))
    assert not fell.rose and fell.p_value > 0.5
    confirmed = sum(loss_rose(rng.exponential(0.5, 400), rng.exponential(0.5, 400)).rose
                    for _ in range(200))
    assert confirmed <= 8  # about 1% of stationary losses by chance


def test_too_few_rows_keep_the_alarm_and_non_finite_losses_are_left_out() -> None:
    """Bugs caught: an alarm dismissed on a handful of rows; one inf loss (a confident
    miss clipped badly) making the mean infinite and every check confirm or fail."""
    rng = np.random.default_rng(1)
    few = loss_rose(rng.exponential(0.5, MIN_ROWS - 1), rng.exponential(0.5, 400))
    assert few.rose and few.before_rows == MIN_ROWS - 1
    with_inf = np.append(rng.exponential(0.5, 400), np.inf)
    check = loss_rose(with_inf, rng.exponential(0.5, 400))
    assert check.before_rows == 400 and np.isfinite(check.before)
    assert "v2's loss" in check.describe(2) and "400 after" in check.describe(2)
