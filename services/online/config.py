"""The online learner's settings as plain data, for the configuration.

``models.<name>.online`` is validated against :class:`LearnerSettings` when the
configuration loads, together with the model's task (:meth:`LearnerSettings.check_task`):
a configured estimator must be a river class of the kind the task needs. River is
imported only for that check, so a configuration that keeps the defaults loads without it;
:class:`services.online.learner.LearnerConfig` adds the river builders on top.

Estimators per task when none is configured (``DEFAULT_ESTIMATORS``):

* ``binary`` -- ``linear_model.LogisticRegression``;
* ``multiclass`` -- ``multiclass.OneVsRestClassifier`` over logistic regressions: one
  binary model per class, each with its intercept. Measured on three Gaussian classes
  with priors 0.7/0.2/0.1 (3,000 events learned, then 3,000 scored): one-vs-rest 78.9%
  accuracy and 0.52 cross-entropy; ``linear_model.SoftmaxRegression`` (no intercept)
  62.0% and 0.89, below the 70% of always answering the majority class;
* ``regression`` -- ``linear_model.LinearRegression``, with its target standardised
  (``scale_target``) so one learning rate fits labels in any unit.

``params`` are the estimator's parameters; with no ``estimator`` they are merged over the
default's (``{"optimizer": ...}`` tunes the binary default's logistic regression).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.model.task import Task, TaskKind
from services.online.river_names import RiverNameError, build_river_object, check_dotted

if TYPE_CHECKING:
    from river import base

DEFAULT_ESTIMATORS: Mapping[TaskKind, tuple[str, Mapping[str, Any]]] = {
    "binary": ("linear_model.LogisticRegression", {}),
    "multiclass": ("multiclass.OneVsRestClassifier",
                   {"classifier": {"river": "linear_model.LogisticRegression"}}),
    "regression": ("linear_model.LinearRegression", {}),
}
DEFAULT_DETECTOR = "drift.ADWIN"


class LearnerSettings(BaseModel):
    """How the online learner is built; all fields are plain data (YAML/env friendly)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # A river class relative to ``river`` ("tree.HoeffdingTreeClassifier"); None: the
    # task's default (``DEFAULT_ESTIMATORS``).
    estimator: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    scale_numeric: bool = True
    # Regression: the estimator learns the standardised label (running mean and sd,
    # winsorized like the inputs) and answers in the label's units.
    scale_target: bool = True
    drift_detector: str = DEFAULT_DETECTOR
    drift_params: dict[str, Any] = Field(default_factory=dict)
    signal: Literal["worsening", "any"] = "worsening"
    # The detector's latest inputs kept to estimate where a detected change began
    # (services.online.cutpoint); 0 keeps none (the detector's own window, if any).
    cut_window: int = Field(default=8192, ge=0)
    warmup: int = Field(default=200, ge=0)
    # Also score each labelled event with the registry's champion and watch its error
    # with a detector of its own (services.online.champion_watch): a concept change the
    # learner adapts to before its detector is sure still shows in the champion's error.
    champion_watch: bool = True
    rolling_window: int = Field(default=1000, ge=10)
    # Largest mini-batch ``learn_many`` hands to the estimator at once: a linear model
    # takes one gradient step per mini-batch, so a consumer batch of thousands of events
    # learned in one piece would adapt to a new concept thousands of times slower.
    max_batch: int = Field(default=256, ge=1)
    # ``auto``: the vectorised path only when every feature is numeric (river's one-hot
    # ``transform_many`` goes through pandas' sparse ``get_dummies`` and costs more than
    # the vectorised update saves; see benchmarks/online.md).
    mini_batch: Literal["auto", "always", "never"] = "auto"
    # Poison guard (see services.online.learner): raw numeric inputs (and regression
    # labels) clipped to this magnitude, standardised ones to this many standard
    # deviations; a good copy of the state kept this often (learned events).
    clip_abs: float = Field(default=1e12, gt=0)
    clip_scaled: float = Field(default=10.0, gt=0)
    good_every: int = Field(default=500, ge=1)

    @field_validator("estimator")
    @classmethod
    def _check_estimator(cls, v: str | None) -> str | None:
        return None if v is None else check_dotted(v)

    @field_validator("drift_detector")
    @classmethod
    def _qualify_detector(cls, v: str) -> str:
        return check_dotted(v if "." in v else f"drift.{v}")

    def learner_fields(self) -> dict[str, Any]:
        """Only the :class:`LearnerSettings` fields (a subclass may carry more)."""
        return self.model_dump(include=set(LearnerSettings.model_fields))

    def estimator_for(self, task: Task) -> tuple[str, dict[str, Any]]:
        """The estimator's dotted name and parameters for ``task``."""
        if self.estimator is not None:
            return self.estimator, dict(self.params)
        name, params = DEFAULT_ESTIMATORS[task.kind]
        return name, {**params, **self.params}

    def check_task(self, task: Task) -> None:
        """Build what is configured once, so a mistake fails when the configuration loads.

        Raises ``ValueError`` (a :class:`~services.online.river_names.RiverNameError`) for
        an estimator that is not a river class of the task's kind, a parameter it does not
        take, or a detector that is not a river drift detector. The defaults are not built
        (nothing to check, and loading stays free of the river import).
        """
        if self.estimator is not None or self.params:
            build_estimator(self, task)
        if self.drift_detector != DEFAULT_DETECTOR or self.drift_params:
            build_detector(self)


def build_estimator(settings: LearnerSettings, task: Task) -> base.Estimator:
    """A fresh estimator for ``task``: a classifier (multiclass-capable for a multiclass
    task) or a regressor, as configured in ``settings``."""
    from river import base

    name, params = settings.estimator_for(task)
    kind = base.Regressor if task.kind == "regression" else base.Classifier
    estimator = build_river_object(name, params, kind)
    if task.kind == "multiclass" and not estimator._multiclass:
        raise RiverNameError(
            f"river.{name} learns two classes only; a multiclass model needs one that "
            "learns several, e.g. multiclass.OneVsRestClassifier or "
            "tree.HoeffdingTreeClassifier")
    return estimator  # type: ignore[no-any-return]


def build_detector(settings: LearnerSettings) -> base.DriftDetector | base.BinaryDriftDetector:
    """A fresh drift detector as configured in ``settings``."""
    from river import base

    kinds = (base.DriftDetector, base.BinaryDriftDetector)
    return build_river_object(  # type: ignore[no-any-return]
        settings.drift_detector, settings.drift_params, kinds)
