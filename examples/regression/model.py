"""The friedman example's own torch model: a wide-and-deep regressor, built by a factory.

driftloop calls :func:`build` (``models.friedman.factory:
"examples.regression.model:build"``) with the model's ``ModelSchema`` and trains what it
returns: it standardises the inputs and the target, fine-tunes from the last version,
checkpoints and registers it. ``forward(numeric, categorical)`` gets the standardised
numeric inputs ``[batch, schema.n_numeric_inputs]`` (a value and a missing indicator
per feature) and the categorical ids ``[batch, len(schema.categorical)]``, and returns
one value per row, ``[batch]``, in standardised target units.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class WideAndDeep(nn.Module):
    """A linear part for the target's linear terms plus a small network for the rest."""

    def __init__(self, inputs: int, hidden: int = 32) -> None:
        super().__init__()
        self.wide = nn.Linear(inputs, 1)
        self.deep = nn.Sequential(nn.Linear(inputs, hidden), nn.SiLU(),
                                  nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """One value per row (this example has no categorical inputs)."""
        return (self.wide(numeric) + self.deep(numeric)).squeeze(-1)


def build(schema: Any) -> nn.Module:
    """The module for ``schema`` (a regression task with numeric inputs only)."""
    if schema.task != "regression" or schema.categorical:
        raise ValueError("this model predicts one number from numeric inputs")
    return WideAndDeep(schema.n_numeric_inputs)
