"""One model's typed settings: the ``models.<name>`` section of the configuration.

Each section is the type its service consumes (the drift policy and windows, the
training config merged over ``services/training/defaults.yaml``, retrain limits, the
shadow and rollback policies, the online learner), so a misspelt key or an invalid
number fails when the configuration loads, not when a service first meets the model.
What the model *is* (its task, classes, factory) belongs here too, next to how it is
watched and retrained.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.drift.policy import DriftSettings
from services.model.task import Task
from services.online.config import LearnerSettings
from services.shadow.decision import ShadowPolicy
from services.shadow.rollback import RollbackPolicy
from services.training.config import RetrainSettings, TrainingConfig, load_config


class InlineFeature(BaseModel):
    """One feature of an inline spec."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: str = Field("numeric", pattern=r"^(numeric|categorical)$")
    critical: bool = False


class InlineSpec(BaseModel):
    """A model's inputs given in the configuration (models outside the Feast repo)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entity: str = "entity"
    label: str = "label"
    features: tuple[InlineFeature, ...] = Field(min_length=1)


class OnlineSettings(LearnerSettings):
    """A model's ``online`` section; ``online: false`` turns the learner off."""

    enabled: bool = True
    spec: InlineSpec | None = None


class ModelSettings(BaseModel):
    """Everything configurable about one model; every section has its defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: Task = Field(default_factory=Task)
    factory: str | None = Field(
        None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="``package.module:function`` building the user's nn.Module "
                    "(None: the built-in tabular MLP)",
    )
    drift: DriftSettings = Field(default_factory=DriftSettings)
    training: TrainingConfig = Field(default_factory=lambda: load_config(None, {}))
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    shadow: ShadowPolicy = Field(default_factory=ShadowPolicy)
    rollback: RollbackPolicy = Field(default_factory=RollbackPolicy)
    online: OnlineSettings = Field(default_factory=OnlineSettings)

    @field_validator("training", mode="before")
    @classmethod
    def _over_training_defaults(cls, value: Any) -> Any:
        """Training overrides are merged into ``services/training/defaults.yaml``."""
        if value is None:
            return load_config(None, {})
        if isinstance(value, dict):
            return load_config(None, value)
        return value

    @field_validator("online", mode="before")
    @classmethod
    def _online_switch(cls, value: Any) -> Any:
        """``online: false`` (or ``true``) is shorthand for ``{enabled: false}``."""
        if isinstance(value, bool):
            return {"enabled": value}
        return {} if value is None else value

    @field_validator("drift", "retrain", "shadow", "rollback", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _online_fits_task(self) -> ModelSettings:
        """A configured online estimator must suit the task (a regressor for regression)."""
        if self.online.enabled:
            self.online.check_task(self.task)
        return self
