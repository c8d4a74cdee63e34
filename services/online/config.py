"""The online learner's settings as plain data (no river import), for the configuration.

``models.<name>.online`` is validated against :class:`LearnerSettings` when the
configuration loads; :class:`services.online.learner.LearnerConfig` adds the river
builders on top.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LearnerSettings(BaseModel):
    """How the online learner is built; all fields are plain data (YAML/env friendly)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    estimator: str = "linear_model.LogisticRegression"
    params: dict[str, Any] = Field(default_factory=dict)
    scale_numeric: bool = True
    drift_detector: str = "drift.ADWIN"
    drift_params: dict[str, Any] = Field(default_factory=dict)
    signal: Literal["worsening", "any"] = "worsening"
    warmup: int = Field(default=200, ge=0)
    rolling_window: int = Field(default=1000, ge=10)
    # Largest mini-batch ``learn_many`` hands to the estimator at once: a linear model
    # takes one gradient step per mini-batch, so a consumer batch of thousands of events
    # learned in one piece would adapt to a new concept thousands of times slower.
    max_batch: int = Field(default=256, ge=1)
    # ``auto``: the vectorised path only when every feature is numeric (river's one-hot
    # ``transform_many`` goes through pandas' sparse ``get_dummies`` and costs more than
    # the vectorised update saves; see benchmarks/online.md).
    mini_batch: Literal["auto", "always", "never"] = "auto"
    # Poison guard (see services.online.learner): raw numeric inputs clipped to this
    # magnitude, standardised ones to this many standard deviations; a good copy of the
    # state kept this often (learned events).
    clip_abs: float = Field(default=1e12, gt=0)
    clip_scaled: float = Field(default=10.0, gt=0)
    good_every: int = Field(default=500, ge=1)

    @field_validator("drift_detector")
    @classmethod
    def _qualify_detector(cls, v: str) -> str:
        return v if "." in v else f"drift.{v}"

    def learner_fields(self) -> dict[str, Any]:
        """Only the :class:`LearnerSettings` fields (a subclass may carry more)."""
        return self.model_dump(include=set(LearnerSettings.model_fields))
