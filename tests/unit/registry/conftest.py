"""A registry per backend (local directory and in-memory fsspec) and a small model."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from services.model.preprocessing import Preprocessor
from services.model.tabular import build_tabular
from services.registry.manifest import Lineage
from services.registry.store import ModelRegistry, RegisteredVersion
from services.training.config import ArchitectureConfig
from services.training.synthetic import synthetic_frame, synthetic_spec

SPEC = synthetic_spec(n_numeric=3, n_categorical=1)


@pytest.fixture(params=["local", "memory"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    if request.param == "local":
        return ModelRegistry(str(tmp_path / "registry"))
    return ModelRegistry(f"memory://reg-{uuid.uuid4().hex}")


@pytest.fixture(scope="session")
def artifacts() -> dict[str, Any]:
    pre = Preprocessor.fit(SPEC, synthetic_frame(100, SPEC))
    model = build_tabular(pre.schema, ArchitectureConfig(hidden_sizes=(4,)))
    return {
        "state_dict": model.state_dict(),
        "preprocessing": pre.to_dict(),
        "model_meta": model.meta,
    }


def _register(
    registry: ModelRegistry,
    artifacts: dict[str, Any],
    request_id: str | None = None,
    model: str = "m",
    parent: int | None = None,
) -> RegisteredVersion:
    return registry.register(
        model,
        **artifacts,
        lineage=Lineage(
            training_snapshot_id=f"snap-{request_id}",
            parent_version=parent,
            parent_snapshot_id="snap-parent" if parent else None,
            request_id=request_id,
            reason="covariate",
        ),
        hyperparameters={"lr": 0.001},
        metrics={"val_loss": 0.5},
        seeds={"seed": 0},
    )


@pytest.fixture(scope="session")
def register() -> Any:
    """``register(registry, artifacts, request_id=None, model="m", parent=None)``."""
    return _register


@pytest.fixture(scope="session")
def spec() -> Any:
    return SPEC
