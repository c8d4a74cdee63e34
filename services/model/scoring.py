"""Score a registry version: the one place a stored model turns features into predictions.

:func:`predict` is the scoring function (per task: P(label == 1), class probabilities,
or a value in the label's units; see :mod:`services.model.task`); :func:`predict_proba`
is its binary form. :class:`Scorer` holds a verified version
built once (shadow evaluation scores every event with it, ``predict`` one request). The
version's files were checked by the registry (sha256, ``torch.load(weights_only=True)``)
before anything here sees them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from services.model.builder import restore_module
from services.model.preprocessing import Preprocessor
from services.model.task import Task

if TYPE_CHECKING:
    from services.registry.store import LoadedModel, ModelRegistry


def outputs_to_predictions(task: Task, outputs: torch.Tensor,
                           preprocessor: Preprocessor) -> np.ndarray:
    """A module's raw outputs as the task's predictions (float64).

    binary: sigmoid of one logit, shape ``[n]``; multiclass: softmax over K logits,
    ``[n, K]``; regression: the output mapped back to label units, ``[n]``.
    """
    out = outputs.detach().float()
    if task.kind == "multiclass":
        return torch.softmax(out.reshape(out.shape[0], -1), dim=1).numpy().astype(np.float64)
    flat = out.reshape(-1)
    if task.kind == "binary":
        return torch.sigmoid(flat).numpy().astype(np.float64)
    values = flat.numpy().astype(np.float64)
    return values if preprocessor.target is None else preprocessor.target.to_label_units(values)


def predict(module: nn.Module, preprocessor: Preprocessor, frame: pd.DataFrame,
            task: Task) -> np.ndarray:
    """The task's prediction for every row of ``frame`` (see :func:`outputs_to_predictions`)."""
    enc = preprocessor.transform(frame)
    with torch.no_grad():
        outputs = module(torch.from_numpy(enc.numeric), torch.from_numpy(enc.categorical))
    return outputs_to_predictions(task, outputs, preprocessor)


def predict_proba(module: nn.Module, preprocessor: Preprocessor, frame: pd.DataFrame) -> np.ndarray:
    """P(label == 1) per row of ``frame`` (float64, shape ``[len(frame)]``) of a binary model."""
    return predict(module, preprocessor, frame, Task())


@dataclass(frozen=True)
class Scorer:
    """A verified version, built once: module (CPU, eval mode) and its preprocessing."""

    model: str
    version: int
    module: nn.Module
    preprocessor: Preprocessor
    task: Task = field(default_factory=Task)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> Scorer:
        """Build the module and preprocessing of a version the registry loaded."""
        return cls(
            loaded.model,
            loaded.version,
            restore_module(loaded.model_meta, loaded.state_dict),
            Preprocessor.from_dict(loaded.preprocessing),
            loaded.task,
        )

    def predict(self, rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The task's prediction per row (a frame, or feature dicts; absent features are
        missing): P(label == 1) ``[n]``, class probabilities ``[n, K]``, or values ``[n]``."""
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        return predict(self.module, self.preprocessor, frame, self.task)


def load_scorer(
    registry: ModelRegistry, model: str, ref: int | str, *, sha256: str | None = None
) -> Scorer:
    """Load (verifying every file, and the manifest against ``sha256`` when given) and build."""
    return Scorer.from_loaded(registry.load(model, ref, expected_manifest_sha256=sha256))
