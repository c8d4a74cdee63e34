"""Score a registry version: the one place a stored model turns features into probabilities.

:func:`predict_proba` is the scoring function; :class:`Scorer` holds a verified version
built once (shadow evaluation scores every event with it, ``predict`` one request). The
version's files were checked by the registry (sha256, ``torch.load(weights_only=True)``)
before anything here sees them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from services.model.builder import restore_module
from services.model.preprocessing import Preprocessor

if TYPE_CHECKING:
    from services.registry.store import LoadedModel, ModelRegistry


def predict_proba(module: nn.Module, preprocessor: Preprocessor, frame: pd.DataFrame) -> np.ndarray:
    """P(label == 1) per row of ``frame`` (float64, shape ``[len(frame)]``)."""
    enc = preprocessor.transform(frame)
    with torch.no_grad():
        logits = module(torch.from_numpy(enc.numeric), torch.from_numpy(enc.categorical))
    return torch.sigmoid(logits.float()).numpy().reshape(-1).astype(np.float64)


@dataclass(frozen=True)
class Scorer:
    """A verified version, built once: module (CPU, eval mode) and its preprocessing."""

    model: str
    version: int
    module: nn.Module
    preprocessor: Preprocessor

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> Scorer:
        """Build the module and preprocessing of a version the registry loaded."""
        return cls(
            loaded.model,
            loaded.version,
            restore_module(loaded.model_meta, loaded.state_dict),
            Preprocessor.from_dict(loaded.preprocessing),
        )

    def predict(self, rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """P(label == 1) per row (a frame, or feature dicts; absent features are missing)."""
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        return predict_proba(self.module, self.preprocessor, frame)


def load_scorer(
    registry: ModelRegistry, model: str, ref: int | str, *, sha256: str | None = None
) -> Scorer:
    """Load (verifying every file, and the manifest against ``sha256`` when given) and build."""
    return Scorer.from_loaded(registry.load(model, ref, expected_manifest_sha256=sha256))
