"""The tabular model: numerics + per-categorical embeddings -> MLP -> its task's head.

The head has ``n_outputs`` units: one logit for a binary task, one value (a
standardised target) for regression, K logits for a multiclass task. ``forward``
returns ``[batch]`` when ``n_outputs`` is 1 and ``[batch, K]`` otherwise.

Its shape is described by a small JSON-able ``model_meta`` dict (input widths,
vocabulary sizes, embedding widths, hidden sizes, dropout, outputs), so a stored state
dict can be rebuilt without the training config: ``TabularModel.from_meta(meta)``.
:func:`build_tabular` is the built-in model builder (see :mod:`services.model.builder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

from services.model.preprocessing import UNKNOWN_INDEX, InputSchema

META_FORMAT = 1


class TabularArchitecture(Protocol):
    """What :func:`build_tabular` needs to know (``ArchitectureConfig`` of the training
    configuration is one)."""

    @property
    def hidden_sizes(self) -> Sequence[int]: ...

    @property
    def dropout(self) -> float | None: ...

    def embedding_dim(self, cardinality: int) -> int: ...


class TabularModel(nn.Module):
    """An MLP over standardised numerics and categorical ids (0 = unknown), with
    ``n_outputs`` outputs (1: binary logit or regression value; K: class logits)."""

    def __init__(
        self,
        n_numeric: int,
        cardinalities: tuple[int, ...] | list[int],
        embedding_dims: tuple[int, ...] | list[int],
        hidden_sizes: tuple[int, ...] | list[int],
        dropout: float,
        n_outputs: int = 1,
    ) -> None:
        super().__init__()
        if len(cardinalities) != len(embedding_dims):
            raise ValueError("one embedding width per categorical feature")
        if int(n_outputs) < 1:
            raise ValueError(f"n_outputs must be at least 1, got {n_outputs}")
        self.n_numeric = int(n_numeric)
        self.n_outputs = int(n_outputs)
        self.embeddings = nn.ModuleList(
            nn.Embedding(int(c), int(d)) for c, d in zip(cardinalities, embedding_dims, strict=True)
        )
        layers: list[nn.Module] = []
        width = self.n_numeric + sum(int(d) for d in embedding_dims)
        for size in hidden_sizes:
            layers += [nn.Linear(width, int(size)), nn.ReLU(), nn.Dropout(float(dropout))]
            width = int(size)
        layers.append(nn.Linear(width, self.n_outputs))
        self.mlp = nn.Sequential(*layers)
        self._meta = {
            "format": META_FORMAT,
            "n_numeric": self.n_numeric,
            "cardinalities": [int(c) for c in cardinalities],
            "embedding_dims": [int(d) for d in embedding_dims],
            "hidden_sizes": [int(h) for h in hidden_sizes],
            "dropout": float(dropout),
            "n_outputs": self.n_outputs,
        }

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Outputs of shape ``[batch]`` (one output) or ``[batch, n_outputs]``."""
        parts = [numeric]
        parts += [emb(categorical[:, j]) for j, emb in enumerate(self.embeddings)]
        out = self.mlp(torch.cat(parts, dim=1))
        return out.squeeze(1) if self.n_outputs == 1 else out

    @property
    def meta(self) -> dict[str, Any]:
        """JSON-able description sufficient to rebuild this module."""
        return dict(self._meta)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> TabularModel:
        """Rebuild an (untrained) module from ``meta``."""
        if meta.get("format") != META_FORMAT:
            raise ValueError(f"unsupported model meta format {meta.get('format')!r}")
        return cls(
            meta["n_numeric"],
            meta["cardinalities"],
            meta["embedding_dims"],
            meta["hidden_sizes"],
            meta["dropout"],
            int(meta["n_outputs"]),
        )


DEFAULT_DROPOUT: dict[str, float] = {"binary": 0.1, "multiclass": 0.1, "regression": 0.0}
"""Dropout per task when the architecture leaves it unset: none for regression, whose
output is fitted to a value (dropout's noise kept the built-in model above a scratch
run's loss on the fine-tuning benchmark; see benchmarks/training.md)."""


def build_tabular(
    schema: InputSchema, arch: TabularArchitecture, n_outputs: int = 1, task: str = "binary",
) -> TabularModel:
    """A fresh (untrained) model sized for ``schema``'s encoded inputs and ``n_outputs``
    outputs (``Task.n_outputs``: K for multiclass, else 1); ``task`` picks the dropout
    when ``arch.dropout`` is unset."""
    cards = schema.cardinalities
    return TabularModel(
        schema.n_numeric_inputs,
        cards,
        tuple(arch.embedding_dim(c) for c in cards),
        arch.hidden_sizes,
        DEFAULT_DROPOUT[task] if arch.dropout is None else arch.dropout,
        n_outputs,
    )


def grow_embeddings(
    state_dict: dict[str, torch.Tensor], meta: dict[str, Any], cardinalities: tuple[int, ...]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Enlarge embedding tables to ``cardinalities``; new rows copy the unknown row.

    A category the parent never saw was scored through the unknown bucket, so starting
    its own row there keeps the parent's predictions unchanged until training moves it.
    """
    old = meta["cardinalities"]
    if len(old) != len(cardinalities) or any(
        n < o for n, o in zip(cardinalities, old, strict=True)
    ):
        raise ValueError(f"cannot shrink embeddings {old} -> {list(cardinalities)}")
    state = dict(state_dict)
    for j, (o, n) in enumerate(zip(old, cardinalities, strict=True)):
        if n == o:
            continue
        key = f"embeddings.{j}.weight"
        weight = state[key]
        extra = weight[UNKNOWN_INDEX : UNKNOWN_INDEX + 1].expand(n - o, -1).clone()
        state[key] = torch.cat([weight, extra], dim=0)
    new_meta = dict(meta, cardinalities=[int(c) for c in cardinalities])
    return state, new_meta
