"""Whether a concept alarm holds for the champion: its loss after the change point is
higher than before it (pure).

A concept detector watches an error stream: the online learner's own, or the
champion's. The online learner keeps learning, so its error moves for reasons of its
own (it adapts to a shift at its own pace); an alarm on it says the *learner's* error
rose, not that the champion's did. Measured on the closed-loop benchmark (a covariate
shift, regression, 1,000-event windows): three hours of event time after v2 was
promoted for the shift, the online learner raised a concept alarm at a point where
nothing changed; a second episode trained v3 from 400 rows after it and promoted it
over v2 -- two promotions for one change, against the target of one.

So before a concept-only attempt that only the online learner's alarm stands behind
trains (the champion watch's alarm is about the champion already), its premise is
checked with the labels it has anyway: the champion's per-row loss on the rows after the
change point against the rows before it (those after the champion's own training window,
so both are rows it never trained on). A one-sided Welch test at ``SIGNIFICANCE``: when
the loss did not rise, the champion already fits the data after the change, and the
episode ends ``adapted`` with both losses as evidence. A real concept change raises the
loss many-fold (the closed-loop benchmark's: 0.53 to over 1 log loss, 2 to 114 squared
error), far beyond the test's reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import ttest_ind

SIGNIFICANCE = 0.01
"""Level of the one-sided test that the loss after the change point is higher."""
MIN_ROWS = 50
"""Fewer rows on either side: no check (the alarm is taken as it is)."""


@dataclass(frozen=True, slots=True)
class LossCheck:
    """The champion's mean loss before and after the change point, and the verdict."""

    rose: bool
    before: float
    after: float
    before_rows: int
    after_rows: int
    p_value: float

    def describe(self, version: int) -> str:
        """One line for an episode event's detail."""
        return (f"v{version}'s loss {self.before:.4g} on {self.before_rows} rows before the "
                f"change point, {self.after:.4g} on {self.after_rows} after (one-sided "
                f"p={self.p_value:.3g})")


def loss_rose(before: np.ndarray, after: np.ndarray) -> LossCheck:
    """Is the per-row loss ``after`` the change point higher than ``before`` it? Too few
    rows on either side count as risen (the alarm stands)."""
    before = np.asarray(before, dtype=np.float64)
    after = np.asarray(after, dtype=np.float64)
    before, after = before[np.isfinite(before)], after[np.isfinite(after)]
    b = float(before.mean()) if len(before) else float("nan")
    a = float(after.mean()) if len(after) else float("nan")
    if min(len(before), len(after)) < MIN_ROWS:
        return LossCheck(True, b, a, len(before), len(after), float("nan"))
    if np.ptp(before) == 0 and np.ptp(after) == 0:  # constant losses: a plain comparison
        return LossCheck(a > b, b, a, len(before), len(after), 0.0 if a > b else 1.0)
    p = float(ttest_ind(after, before, equal_var=False, alternative="greater").pvalue)
    return LossCheck(p < SIGNIFICANCE, b, a, len(before), len(after), p)
