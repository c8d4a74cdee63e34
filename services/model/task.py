"""What a model predicts: its task (binary, multiclass, regression), pure and shared.

Every place that meets a label or a prediction asks the model's :class:`Task`:
labels are checked at every entrance (:meth:`Task.label_problem`, :meth:`Task.check_labels`),
and one labelled prediction costs :meth:`Task.event_loss`, the loss the shadow
evaluator pairs, the rollback watch follows and the online learner's drift detector
reads. The task is declared once, in the model's typed settings (``models.<m>.task``),
and stored in every registry version's manifest so a scorer knows what it holds.

Predictions, by task (what :class:`services.model.scoring.Scorer` returns per row):

* ``binary`` -- P(label == 1), a float in [0, 1]; labels are 0 or 1;
* ``multiclass`` -- one probability per declared class, in the order of ``classes``
  (a row of ``K`` floats summing to 1); labels are one of ``classes`` (integers);
* ``regression`` -- the predicted value in the label's own units; labels are any
  finite number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

TaskKind = Literal["binary", "multiclass", "regression"]
DEFAULT_EPS = 1e-7

LOSS_NAMES: Mapping[str, str] = {
    "binary": "log_loss",
    "multiclass": "cross_entropy",
    "regression": "squared_error",
}
"""The per-event loss of each task, by the name metrics and verdicts carry."""


class LabelError(ValueError):
    """A label does not fit the model's task (the message names the field and value)."""


class Task(BaseModel):
    """A model's task and, for multiclass, its classes (label values in output order)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: TaskKind = "binary"
    classes: tuple[int, ...] = Field(default=(), description="multiclass: the label values")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        """``task: regression`` is shorthand for ``task: {kind: regression}``."""
        return {"kind": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _classes_fit_kind(self) -> Task:
        if self.kind == "multiclass":
            if len(self.classes) < 2:
                raise ValueError("a multiclass task declares at least 2 classes")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes must be distinct, got {list(self.classes)}")
        elif self.kind == "binary":
            if self.classes not in ((), (0, 1)):
                raise ValueError("a binary task's classes are 0 and 1")
        elif self.classes:
            raise ValueError("a regression task has no classes")
        return self

    # -- shape -----------------------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        """Outputs per row of a module for this task (K logits for multiclass, else 1)."""
        return len(self.classes) if self.kind == "multiclass" else 1

    @property
    def loss_name(self) -> str:
        """Name of the per-event loss (``log_loss``, ``cross_entropy``, ``squared_error``)."""
        return LOSS_NAMES[self.kind]

    @property
    def is_classification(self) -> bool:
        """Binary or multiclass: predictions are probabilities."""
        return self.kind != "regression"

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in a version's manifest."""
        return {"kind": self.kind, "classes": list(self.classes)}

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any] | None) -> Task:
        """The task stored in a manifest; a version registered without one has the default
        task (binary), as a model without a ``task`` setting does."""
        return cls() if not data else cls.model_validate(dict(data))

    # -- labels ----------------------------------------------------------------------
    def label_problem(self, value: Any) -> str | None:
        """Why ``value`` is not a label of this task (None when it is one)."""
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            return f"a number is expected, got {value!r}"
        x = float(value)
        if not math.isfinite(x):
            return f"a finite number is expected, got {value!r}"
        if self.kind == "binary" and x not in (0.0, 1.0):
            return f"a binary label is 0 or 1, got {value!r}"
        if self.kind == "multiclass" and (not x.is_integer() or int(x) not in self.classes):
            return f"a label is one of the classes {list(self.classes)}, got {value!r}"
        return None

    def check_labels(self, values: Sequence[Any] | np.ndarray, field: str = "label") -> None:
        """Raise :class:`LabelError` naming ``field`` and the first value that does not fit."""
        arr = np.asarray(values)
        if arr.size == 0:
            return
        if arr.dtype.kind in "fiu":
            bad = ~self.valid_mask(arr)
            if not bad.any():
                return
            first = arr[int(np.argmax(bad))]
            problem = self.label_problem(first.item()) or "does not fit"
            raise LabelError(f"{field}: {problem} ({int(bad.sum())} of {arr.size} rows)")
        for v in arr.tolist():
            problem = self.label_problem(v)
            if problem is not None:
                raise LabelError(f"{field}: {problem}")

    def valid_mask(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of the numeric ``values`` that are labels of this task."""
        x = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(x)
        if self.kind == "binary":
            ok &= (x == 0.0) | (x == 1.0)
        elif self.kind == "multiclass":
            ok &= np.isin(x, np.asarray(self.classes, dtype=np.float64))
        return ok

    def class_index(self, labels: np.ndarray) -> np.ndarray:
        """Multiclass: each label's position in ``classes`` (labels must be valid)."""
        lookup = {float(c): i for i, c in enumerate(self.classes)}
        return np.fromiter((lookup[float(v)] for v in np.asarray(labels).reshape(-1)),
                           dtype=np.int64)

    # -- losses ----------------------------------------------------------------------
    def event_loss(self, label: float, prediction: Any, eps: float = DEFAULT_EPS) -> float:
        """The loss of one prediction (see the module doc for its form) given its label.

        Probabilities are clipped to ``[eps, 1 - eps]`` so one confident mistake costs at
        most ``-log(eps)``. Raises :class:`LabelError` for a label of another task.
        """
        problem = self.label_problem(label)
        if problem is not None:
            raise LabelError(f"label: {problem}")
        if self.kind == "binary":
            p = min(max(float(prediction), eps), 1.0 - eps)
            return -math.log(p) if label == 1.0 else -math.log1p(-p)
        if self.kind == "multiclass":
            probs = np.asarray(prediction, dtype=np.float64).reshape(-1)
            if probs.size != len(self.classes):
                raise ValueError(f"{len(self.classes)} class probabilities expected, "
                                 f"got {probs.size}")
            p = float(probs[self.classes.index(int(label))])
            return -math.log(min(max(p, eps), 1.0))
        return (float(prediction) - float(label)) ** 2

    def batch_loss(self, labels: np.ndarray, predictions: np.ndarray,
                   eps: float = DEFAULT_EPS) -> np.ndarray:
        """Vectorised :meth:`event_loss` (labels already valid): one loss per row."""
        y = np.asarray(labels, dtype=np.float64).reshape(-1)
        pred = np.asarray(predictions, dtype=np.float64)
        if self.kind == "binary":
            p = np.clip(pred.reshape(-1), eps, 1.0 - eps)
            return np.where(y == 1.0, -np.log(p), -np.log1p(-p))
        if self.kind == "multiclass":
            idx = self.class_index(y)
            p = pred.reshape(len(y), len(self.classes))[np.arange(len(y)), idx]
            return -np.log(np.clip(p, eps, 1.0))
        return (pred.reshape(-1) - y) ** 2
