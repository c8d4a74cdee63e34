"""What a model consumes: its features' names and kinds, read from its FeatureService.

This is the one in-code description of a model's inputs. It is never written by
hand for a real model: ``services.features.feast_repo.load_model_spec`` builds it
from the model's Feast FeatureService, so there is no second list of features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FeatureKind = Literal["numeric", "categorical"]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One input feature of a model."""

    name: str
    kind: FeatureKind
    critical: bool = False


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model's entity key, ordered features and label column."""

    model: str
    entity: str
    features: tuple[FeatureSpec, ...]
    label: str = "label"
    feature_views: tuple[str, ...] = field(default=())

    @property
    def numeric(self) -> tuple[FeatureSpec, ...]:
        """Numeric features, in model order."""
        return tuple(f for f in self.features if f.kind == "numeric")

    @property
    def categorical(self) -> tuple[FeatureSpec, ...]:
        """Categorical features, in model order."""
        return tuple(f for f in self.features if f.kind == "categorical")

    @property
    def names(self) -> tuple[str, ...]:
        """Feature names, in model order."""
        return tuple(f.name for f in self.features)
