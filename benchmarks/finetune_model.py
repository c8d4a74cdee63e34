"""A user-style model factory for the fine-tuning benchmark (``benchmarks.finetune_model:build``).

It stands for a model a user brings: driftloop calls ``build(schema)`` with the
model's :class:`~services.model.builder.ModelSchema` and trains, fine-tunes,
checkpoints and registers what it returns. A residual MLP with per-categorical
embeddings, unlike the built-in model's plain MLP, so the benchmark proves the
factory path rather than the built-in one.
"""

from __future__ import annotations

import torch
from torch import nn

from services.model.builder import ModelSchema


class ResidualTabular(nn.Module):
    """Embeddings + numerics -> a linear stem -> two residual blocks -> the task's outputs."""

    def __init__(self, schema: ModelSchema, width: int = 64, embedding: int = 6) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding) for c in schema.cardinalities)
        self.stem = nn.Linear(schema.n_numeric_inputs + embedding * len(schema.cardinalities),
                              width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
            for _ in range(2))
        self.head = nn.Linear(width, schema.n_outputs)
        self.multiclass = schema.task == "multiclass"

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """``[batch]`` (binary, regression) or ``[batch, K]`` (multiclass)."""
        parts = [numeric] + [emb(categorical[:, j]) for j, emb in enumerate(self.embeddings)]
        h = self.stem(torch.cat(parts, dim=1))
        for block in self.blocks:
            h = h + block(h)
        out = self.head(h)
        return out if self.multiclass else out.squeeze(1)


def build(schema: ModelSchema) -> nn.Module:
    """The factory: a fresh, untrained module for ``schema``."""
    return ResidualTabular(schema)
