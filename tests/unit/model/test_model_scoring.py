"""Scoring a registry version: the stored module and preprocessing score as the trained ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from services.model.preprocessing import Preprocessor
from services.model.scoring import Scorer, load_scorer, predict_proba
from services.model.tabular import build_tabular
from services.registry.manifest import Lineage
from services.registry.store import ArtifactIntegrityError, ModelRegistry
from services.training.config import ArchitectureConfig
from services.training.synthetic import synthetic_frame, synthetic_spec

SPEC = synthetic_spec(n_numeric=3, n_categorical=2)


def _registered(tmp_path: Path) -> tuple[ModelRegistry, torch.nn.Module, Preprocessor, str]:
    torch.manual_seed(7)
    pre = Preprocessor.fit(SPEC, synthetic_frame(300, SPEC, seed=1))
    module = build_tabular(pre.schema, ArchitectureConfig(hidden_sizes=(8, 4), dropout=0.3))
    module.eval()
    registry = ModelRegistry(str(tmp_path / "registry"))
    reg = registry.register(
        "m", state_dict=module.state_dict(), preprocessing=pre.to_dict(),
        model_meta=module.meta, lineage=Lineage(training_snapshot_id="s"),
        hyperparameters={}, metrics={}, seeds={},
    )
    return registry, module, pre, reg.manifest_sha256


def test_a_loaded_version_scores_as_the_module_it_was_saved_from(tmp_path: Path) -> None:
    registry, module, pre, sha = _registered(tmp_path)
    frame = synthetic_frame(25, SPEC, seed=9, shift=1.0, missing_share=0.1)
    enc = pre.transform(frame)
    with torch.no_grad():  # computed here, independently of the scoring module
        logits = module(torch.from_numpy(enc.numeric), torch.from_numpy(enc.categorical))
    expected = 1.0 / (1.0 + np.exp(-logits.numpy().astype(np.float64)))

    scorer = load_scorer(registry, "m", 1, sha256=sha)
    got = scorer.predict(frame)
    assert got.shape == (25,) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert not scorer.module.training  # dropout off: scoring twice gives the same answer
    np.testing.assert_array_equal(scorer.predict(frame), got)
    # feature dicts (the shadow and predict paths) score as the frame's rows
    rows = frame[list(SPEC.names)].head(3).to_dict("records")
    np.testing.assert_allclose(scorer.predict(rows), got[:3], rtol=1e-6)
    np.testing.assert_allclose(predict_proba(scorer.module, scorer.preprocessor, frame), got)


def test_a_manifest_other_than_the_expected_one_is_refused(tmp_path: Path) -> None:
    registry, *_ = _registered(tmp_path)
    with pytest.raises(ArtifactIntegrityError, match="manifest sha256"):
        load_scorer(registry, "m", 1, sha256="0" * 64)


def test_scorer_from_loaded_keeps_the_version(tmp_path: Path) -> None:
    registry, *_ = _registered(tmp_path)
    scorer = Scorer.from_loaded(registry.load("m", 1))
    assert (scorer.model, scorer.version) == ("m", 1)
