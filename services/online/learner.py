"""Online learner: a river pipeline learned per labelled event, with a drift detector on its error.

Why: the batch model is retrained only when the drift monitor sees the *inputs* move. A
concept change (same inputs, new relation to the label) shows up only in the error of a
model that keeps learning, so this learner runs progressive validation (predict, then
learn, per labelled event) and feeds its error to a drift detector (ADWIN by default).
A detection where the error *rose* becomes a :class:`DriftSignal`; the service turns it
into a retrain request through the shared ``RetrainTrigger`` (no policy lives here).
Each signal carries where the change is estimated to have begun, in learned events back
(the detector's inputs since its previous detection, up to ``cut_window`` of them, are
kept for that; see :mod:`services.online.cutpoint`).

Every model's task (:class:`~services.model.task.Task`) decides what is learned, what
a prediction is, what the detector reads and which rolling metrics are kept:

==========  ========================  ==========================  ==========================
task        prediction                detector input (per event)  rolling metrics
==========  ========================  ==========================  ==========================
binary      P(label == 1)             0/1 error (p >= 0.5 wrong)  accuracy, log loss, ROC AUC
multiclass  one probability per       0/1 error (most probable    accuracy, cross-entropy
            declared class            class wrong)
regression  a value in label units    min(|error| / (3 sd), 1)    MAE, RMSE
==========  ========================  ==========================  ==========================

Multiclass probabilities cover every declared class in the order of ``classes``: a class
the estimator has not met yet gets 0 (before any class is met, all are equal). The
regression input is the absolute error over three running standard deviations of the
labels (winsorized like the inputs), capped at 1: ADWIN's bound is calibrated for inputs
in [0, 1], so the raw error made detection depend on the label's unit. Measured on a
linear stream whose coefficients change at event 3,000 (noise sd 10): the raw absolute
error was detected at event 3,007 with labels in their units or x1000 and missed at
x0.001; the scaled error was detected at event 3,039 at all three scales, and neither
fired on the same streams without a change.

The pipeline is built from the model's :class:`~services.featurespec.ModelSpec`:
numeric features are selected and standardised, categorical ones one-hot encoded, the
two joined with a ``TransformerUnion`` and fed to the estimator (per task, see
:mod:`services.online.config`). Any river estimator or detector can be configured by
dotted name relative to the ``river`` package and plain parameters
(:mod:`services.online.river_names`).

Poison guard: numeric inputs that are not finite are left out (counted in
``refused_values``), finite ones clipped to ``clip_abs``, and standardised values clipped
to ``clip_scaled`` running standard deviations before they reach the scaler's moments
and again after scaling (:class:`WinsorizingScaler`), so one extreme event cannot blow
the weights up. Regression labels are clipped to ``clip_abs`` and, once standardised for
the regressor (:class:`WinsorizingTargetScaler`), to ``clip_scaled`` standard deviations.
After every update the learner checks that its state (weights, intercept, scaler
moments, of nested estimators too) is still finite; if not, the update is refused: the
last good copy (taken every ``good_every`` learned events) is restored and
``refused_updates`` counted.

Missing values: a feature that is ``None`` (or absent) is left out of the event's dict,
which river's linear models read as 0 after scaling (mean imputation). The mini-batch
path (``learn_many``) is taken only for complete batches of an estimator that supports
it; a batch with a missing value goes through the per-event path, so both paths see the
same inputs.
"""

from __future__ import annotations

import copy
import math
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from river import base, compose, metrics, preprocessing, stats, utils

from services.featurespec import ModelSpec
from services.model.task import LabelError, Task
from services.online.config import LearnerSettings, build_detector, build_estimator
from services.online.cutpoint import estimate_post_change
from services.online.river_names import (
    RiverNameError,
    build_river_object,
    resolve_river_class,
)

__all__ = [
    "ClipValues", "DriftSignal", "LearnerConfig", "OnlineLearner", "Outcome",
    "RiverNameError", "SelectPresent", "WinsorizingScaler", "WinsorizingTargetScaler",
    "build_pipeline", "build_river_object", "resolve_river_class", "state_is_finite",
]

_PROBA_EPS = 1e-7
ERROR_SDS = 3.0  # regression: an absolute error of 3 label sd is the detector's 1.0


def scaled_miss(miss: float, sd: float) -> float:
    """A regression miss as a detector input in [0, 1]: ``miss`` over :data:`ERROR_SDS`
    label sd, capped at 1 (any miss is 1 while the labels have no spread). The learner's
    detector and the champion watch read the same scale."""
    return min(miss / (ERROR_SDS * sd), 1.0) if sd > 0 else float(miss > 0)


Prediction = float | tuple[float, ...]
"""binary: P(label == 1); multiclass: probabilities in ``classes`` order; regression: a value."""


class SelectPresent(compose.Select):
    """``compose.Select`` that leaves out a selected feature missing from the event.

    River's ``Select`` raises ``KeyError`` on a missing key; an event with a null feature
    must still be scored, so the missing key is just not passed on.
    """

    def transform_one(self, x: dict) -> dict:
        return {k: x[k] for k in self.keys if k in x}


class ClipValues(base.MiniBatchTransformer):
    """Clips every value of the event to ``[-limit, limit]`` (after scaling: in sd)."""

    def __init__(self, limit: float = 10.0) -> None:
        self.limit = limit

    def transform_one(self, x: dict) -> dict:
        lim = self.limit
        return {k: min(max(v, -lim), lim) for k, v in x.items()}

    def transform_many(self, X: pd.DataFrame) -> pd.DataFrame:
        return X.clip(lower=-self.limit, upper=self.limit)


class WinsorizingScaler(preprocessing.StandardScaler):
    """A standard scaler that clips each input to its running ``mean ± limit·sd`` first.

    Why: one extreme value (an amount of 1e12) would inflate the running variance for
    good and squash every later input to zero. After ``warmup`` observations of a feature,
    values beyond ``limit`` standard deviations (``limit·max(|mean|, 1)`` while its sd is
    0) are clipped before they update or meet the moments.
    """

    def __init__(self, limit: float = 10.0, warmup: int = 30) -> None:
        super().__init__()
        self.limit = limit
        self.warmup = warmup

    def _span(self, name: str) -> float | None:
        if self.counts.get(name, 0) < self.warmup:
            return None
        sd = math.sqrt(max(self.vars[name], 0.0))
        return self.limit * (sd if sd > 0 else max(abs(self.means[name]), 1.0))

    def _winsorize(self, x: dict) -> dict:
        out = {}
        for name, value in x.items():
            span = self._span(name)
            if span is not None:
                mean = self.means[name]
                value = min(max(value, mean - span), mean + span)
            out[name] = value
        return out

    def _winsorize_many(self, X: pd.DataFrame) -> pd.DataFrame:
        X = X.copy()
        for name in X.columns:
            span = self._span(name)
            if span is not None:
                mean = self.means[name]
                X[name] = X[name].clip(lower=mean - span, upper=mean + span)
        return X

    def learn_one(self, x: dict) -> None:
        super().learn_one(self._winsorize(x))

    def transform_one(self, x: dict) -> dict:
        return super().transform_one(self._winsorize(x))

    def learn_many(self, X: pd.DataFrame) -> None:
        super().learn_many(self._winsorize_many(X))

    def transform_many(self, X: pd.DataFrame) -> pd.DataFrame:
        return super().transform_many(self._winsorize_many(X))


def winsorize(var: stats.Var, y: float, limit: float, warmup: int = 30) -> float:
    """``y`` clipped to ``var``'s running mean ± ``limit`` sd (``limit·max(|mean|, 1)``
    while the sd is 0), as :class:`WinsorizingScaler` clips inputs; as is while warming up."""
    if var.mean.n < warmup:
        return y
    mean, sd = var.mean.get(), math.sqrt(max(var.get(), 0.0))
    span = limit * (sd if sd > 0 else max(abs(mean), 1.0))
    return min(max(y, mean - span), mean + span)


class WinsorizingTargetScaler(preprocessing.TargetStandardScaler):
    """Regression: the regressor learns the standardised label, clipped like the inputs.

    A linear regressor's one learning rate cannot suit labels in every unit, so the label
    is standardised with its running mean and sd (answers are mapped back). After
    ``warmup`` labels, one beyond ``limit`` sd is clipped before it updates the moments,
    so one extreme label cannot rescale every later answer.
    """

    def __init__(self, regressor: base.Regressor, limit: float = 10.0, warmup: int = 30) -> None:
        super().__init__(regressor=regressor)
        self.limit = limit
        self.warmup = warmup

    def learn_one(self, x: dict, y: float) -> None:
        super().learn_one(x, winsorize(self.var, y, self.limit, self.warmup))


_STATE_ATTRIBUTES = ("weights", "intercept", "means", "vars", "counts")
_NESTED = ("regressor", "classifiers", "var")  # wrapped estimators, OvR's models, moments
_NESTED_KINDS = (base.Base, dict, stats.Var)


def _all_finite(value: Any) -> bool:
    if isinstance(value, bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_all_finite(v) for v in value.values())
    return True


def state_is_finite(obj: Any) -> bool:
    """Whether a river pipeline's numeric state (weights, intercept, scaler moments, and
    those of wrapped estimators: a target scaler's regressor, one-vs-rest's models) is
    finite."""
    if isinstance(obj, compose.Pipeline):
        return all(state_is_finite(step) for step in obj.steps.values())
    if isinstance(obj, compose.TransformerUnion):
        return all(state_is_finite(t) for t in obj.transformers.values())
    if isinstance(obj, stats.Var):
        return math.isfinite(obj.get()) and math.isfinite(obj.mean.get())
    if isinstance(obj, dict):  # one-vs-rest's models by class
        return all(state_is_finite(v) for v in obj.values())
    if not all(_all_finite(getattr(obj, name, None)) for name in _STATE_ATTRIBUTES):
        return False
    nested = [getattr(obj, name, None) for name in _NESTED]
    return all(state_is_finite(v) for v in nested if isinstance(v, _NESTED_KINDS))


class LearnerConfig(LearnerSettings):
    """:class:`LearnerSettings` that can build its river estimator and detector."""

    def make_estimator(self, task: Task | None = None) -> base.Estimator:
        """A fresh estimator for ``task`` (binary when not given), validated by kind."""
        return build_estimator(self, task or Task())

    def make_detector(self) -> base.DriftDetector | base.BinaryDriftDetector:
        """A fresh drift detector instance (validated river detector)."""
        return build_detector(self)


def build_pipeline(
    spec: ModelSpec, config: LearnerConfig, task: Task | None = None
) -> compose.Pipeline:
    """Select+scale numeric features, select+one-hot categorical ones, union, estimator
    (a regressor behind a :class:`WinsorizingTargetScaler` when ``scale_target``)."""
    task = task or Task()
    parts: list[Any] = []
    numeric = [f.name for f in spec.numeric]
    categorical = [f.name for f in spec.categorical]
    if numeric:
        sel = SelectPresent(*numeric)
        if config.scale_numeric:
            scaler = WinsorizingScaler(config.clip_scaled)
            parts.append(sel | scaler | ClipValues(config.clip_scaled))
        else:
            parts.append(sel | ClipValues(config.clip_abs))
    if categorical:
        parts.append(SelectPresent(*categorical) | preprocessing.OneHotEncoder())
    if not parts:
        raise ValueError(f"model {spec.model!r} has no features")
    features = parts[0] if len(parts) == 1 else compose.TransformerUnion(*parts)
    estimator = config.make_estimator(task)
    if task.kind == "regression" and config.scale_target:  # a Regressor (checked by kind)
        estimator = WinsorizingTargetScaler(estimator, config.clip_scaled)  # type: ignore[arg-type]
    return compose.Pipeline(features, estimator)


def _rolling_metrics(task: Task, window: int) -> dict[str, Any]:
    """The rolling metrics of ``task``'s learner, by the name they are reported under."""
    if task.kind == "binary":
        return {"rolling_accuracy": utils.Rolling(metrics.Accuracy, window_size=window),
                "rolling_log_loss": utils.Rolling(metrics.LogLoss, window_size=window),
                "rolling_roc_auc": metrics.RollingROCAUC(window_size=window)}
    if task.kind == "multiclass":
        return {"rolling_accuracy": utils.Rolling(metrics.Accuracy, window_size=window),
                "rolling_cross_entropy": utils.Rolling(metrics.CrossEntropy,
                                                       window_size=window)}
    return {"rolling_mae": utils.Rolling(metrics.MAE, window_size=window),
            "rolling_rmse": utils.Rolling(metrics.RMSE, window_size=window)}


@dataclass(frozen=True, slots=True)
class DriftSignal:
    """A concept-drift detection on the learner's error stream.

    The change is estimated to have begun ``post_change`` learned events back, the
    detection's included: at learned event ``change_learned`` (see
    :mod:`services.online.cutpoint`; ``cut`` says how it was found).
    """

    learned: int  # events learned when it fired
    event_id: str | None
    detector: str
    error_before: float  # detector's estimate of its input just before the detection
    error_after: float  # ... and right after (the recent window)
    post_change: int = 1  # learned events since the estimated change, detection included
    cut: str = "detection"  # split | window | detection

    @property
    def change_learned(self) -> int:
        """The learned count of the first event after the estimated change (1-based)."""
        return max(self.learned - self.post_change + 1, 1)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Progressive-validation result of one labelled event (predicted before learning).

    ``label``: binary ``bool``, multiclass the class, regression the value (as learned);
    ``prediction``: the task's form (see :data:`Prediction`); ``error``: what the drift
    detector read (classification 1.0 wrong, 0.0 right; regression the scaled error).
    """

    event_id: str | None
    label: bool | int | float
    prediction: Prediction
    error: float
    drift: DriftSignal | None = None

    @property
    def proba(self) -> float:
        """Binary: the predicted P(label == 1)."""
        if not isinstance(self.label, bool) or isinstance(self.prediction, tuple):
            raise AttributeError("only a binary outcome has a probability of label 1")
        return self.prediction


class OnlineLearner:
    """Progressive-validation learner with rolling metrics and a drift detector.

    >>> from services.featurespec import FeatureSpec, ModelSpec
    >>> spec = ModelSpec("m", "user", (FeatureSpec("x", "numeric"),))
    >>> lr = OnlineLearner(spec)
    >>> out = lr.learn_one({"x": 1.0}, 1.0, event_id="e1")
    >>> out.proba, lr.learned
    (0.5, 1)
    """

    def __init__(
        self, spec: ModelSpec, config: LearnerConfig | None = None, task: Task | None = None
    ) -> None:
        self.spec = spec
        self.config = config or LearnerConfig()
        self.task = task or Task()
        self.uid = uuid.uuid4().hex  # names this learner's lineage (retrain request ids)
        self.pipeline = build_pipeline(spec, self.config, self.task)
        self.detector = self.config.make_detector()
        self.rolling = _rolling_metrics(self.task, self.config.rolling_window)
        self.label_spread = stats.Var()  # regression: the scale of the detector's input
        self.learned = 0
        self.errors = 0.0  # classification: wrong predictions so far
        self.detections = 0
        self.pending_signals: list[DriftSignal] = []
        # The detector's inputs since its last detection (bounded): where a change began.
        self.recent_errors: deque[float] = deque(maxlen=self.config.cut_window)
        self._numeric = tuple(f.name for f in spec.numeric)
        self._categorical = tuple(f.name for f in spec.categorical)
        self._columns = self._numeric + self._categorical
        self.refused_values = 0  # non-finite numeric inputs left out
        self.refused_updates = 0  # updates undone because the state became non-finite
        self._good: tuple[compose.Pipeline, int] | None = None
        self._remember()

    # ------------------------------------------------------------ poison guard
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_good"] = None  # a snapshot holds the state once, not twice
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.healthy:
            self._remember()

    @property
    def healthy(self) -> bool:
        """Whether the model's state is finite (predictions are numbers)."""
        return state_is_finite(self.pipeline)

    def _remember(self) -> None:
        self._good = (copy.deepcopy(self.pipeline), self.learned)

    def recover(self) -> bool:
        """Restore the last good copy of the pipeline (a fresh one if there is none).

        Returns whether the state had to be restored.
        """
        if self.healthy:
            return False
        if self._good is not None:
            self.pipeline = copy.deepcopy(self._good[0])
        else:
            self.pipeline = build_pipeline(self.spec, self.config, self.task)
            self._remember()
        return True

    def _guard(self) -> None:
        """After an update: undo it if the state became non-finite, else maybe remember."""
        if self.recover():
            self.refused_updates += 1
        elif self._good is None or self.learned - self._good[1] >= self.config.good_every:
            self._remember()

    # ----------------------------------------------------------------- inputs
    def prepare(self, features: Mapping[str, Any]) -> dict[str, Any]:
        """The model's features of one event as river wants them (missing ones left out)."""
        x: dict[str, Any] = {}
        lim = self.config.clip_abs
        for name in self._numeric:
            v = features.get(name)
            if v is None or isinstance(v, str):
                continue
            v = float(v)
            if not math.isfinite(v):
                if not math.isnan(v):
                    self.refused_values += 1
                continue
            x[name] = min(max(v, -lim), lim)
        for name in self._categorical:
            v = features.get(name)
            if v is not None:
                x[name] = str(v)
        return x

    def _label(self, label: float) -> bool | int | float:
        """The label as the estimator learns it; :class:`LabelError` (naming the value)
        for one that does not fit the task."""
        kind = self.task.kind
        if kind == "binary" and label in (0.0, 1.0):  # the common case, checked cheaply
            return label == 1.0
        problem = self.task.label_problem(label)
        if problem is not None:
            raise LabelError(f"label: {problem}")
        if kind == "multiclass":
            return int(label)
        lim = self.config.clip_abs
        return min(max(float(label), -lim), lim)

    @property
    def _estimator(self) -> Any:
        return self.pipeline.steps[next(reversed(self.pipeline.steps))]

    @property
    def supports_many(self) -> bool:
        """Whether the estimator has a vectorised mini-batch path."""
        mode = self.config.mini_batch
        if mode == "never" or (mode == "auto" and self._categorical):
            return False
        predict = "predict_many" if self.task.kind == "regression" else "predict_proba_many"
        return hasattr(self._estimator, "learn_many") and hasattr(self._estimator, predict)

    # ------------------------------------------------------------- predicting
    def _predict_x(self, x: dict[str, Any]) -> Prediction:
        """The task's prediction for prepared inputs (never NaN: no opinion instead)."""
        if self.task.kind == "regression":
            value = float(self.pipeline.predict_one(x))
            return value if math.isfinite(value) else self.label_spread.mean.get()
        proba = self.pipeline.predict_proba_one(x)
        if self.task.kind == "binary":
            return _p_true(proba)
        return _class_probabilities(self.task.classes, proba)

    def predict(self, features: Mapping[str, Any]) -> Prediction:
        """The task's prediction for one event, without learning: P(label == 1), the
        probabilities of ``task.classes`` in order, or a value in the label's units."""
        return self._predict_x(self.prepare(features))

    def predict_proba(self, features: Mapping[str, Any]) -> float:
        """P(label == 1) for one event, without learning (binary models)."""
        if self.task.kind != "binary":
            raise ValueError(f"predict_proba is for binary models; {self.spec.model!r} is "
                             f"{self.task.kind}: use predict")
        return _p_true(self.pipeline.predict_proba_one(self.prepare(features)))

    def _predict_many(self, frame: pd.DataFrame) -> list[Prediction]:
        if self.task.kind == "regression":
            fallback = self.label_spread.mean.get()
            return [v if math.isfinite(v) else fallback
                    for v in map(float, self.pipeline.predict_many(frame))]
        proba = self.pipeline.predict_proba_many(frame)
        if self.task.kind == "multiclass":
            # no class met yet: river answers a frame without columns (nor rows)
            rows = proba.to_dict(orient="records") if len(proba.columns) else [{}] * len(frame)
            return [_class_probabilities(self.task.classes, r) for r in rows]
        if True in proba.columns:
            return [float(p) for p in proba[True]]
        if False in proba.columns:
            return [float(p) for p in 1.0 - proba[False]]
        return [0.5] * len(frame)

    # --------------------------------------------------------------- learning
    def learn_one(
        self, features: Mapping[str, Any], label: float, event_id: str | None = None
    ) -> Outcome:
        """Predict, score, learn one labelled event; update metrics and the detector."""
        outcome = self._learn_one(features, label, event_id)
        self._guard()
        return outcome

    def _learn_one(
        self, features: Mapping[str, Any], label: float, event_id: str | None
    ) -> Outcome:
        y = self._label(label)
        x = self.prepare(features)
        prediction = self._predict_x(x)
        self.pipeline.learn_one(x, y)
        return self._after(event_id, y, prediction)

    def learn_many(
        self,
        rows: Sequence[Mapping[str, Any]],
        labels: Sequence[float],
        event_ids: Sequence[str | None] | None = None,
    ) -> list[Outcome]:
        """Progressive validation over a mini-batch: predict all, then learn all.

        Uses the estimator's ``predict_proba_many`` (regression: ``predict_many``) and
        ``learn_many`` on a pandas frame when it has them and the batch has no missing
        value; otherwise learns event by event. Batches longer than ``config.max_batch``
        are learned in consecutive pieces.
        """
        if len(rows) != len(labels):
            raise ValueError("rows and labels differ in length")
        ids = list(event_ids) if event_ids is not None else [None] * len(rows)
        if not rows:
            return []
        step = self.config.max_batch
        if len(rows) > step:
            out: list[Outcome] = []
            for i in range(0, len(rows), step):
                out += self._learn_chunk(rows[i:i + step], labels[i:i + step], ids[i:i + step])
            return out
        return self._learn_chunk(rows, labels, ids)

    def _learn_chunk(
        self, rows: Sequence[Mapping[str, Any]], labels: Sequence[float],
        ids: Sequence[str | None],
    ) -> list[Outcome]:
        xs = [self.prepare(r) for r in rows]
        complete = all(len(x) == len(self._columns) for x in xs)
        if not (self.supports_many and complete):
            # One state check per chunk, not per event (it walks every weight).
            out = [self._learn_one(r, lab, i) for r, lab, i in zip(rows, labels, ids, strict=True)]
            self._guard()
            return out
        ys = [self._label(lab) for lab in labels]
        frame = pd.DataFrame(xs, columns=list(self._columns))
        predictions = self._predict_many(frame)
        self.pipeline.learn_many(frame, pd.Series(ys))
        out = [self._after(i, y, p) for i, y, p in zip(ids, ys, predictions, strict=True)]
        self._guard()
        return out

    def _after(self, event_id: str | None, y: Any, prediction: Prediction) -> Outcome:
        """Score one prediction against its label: metrics, then the drift detector."""
        kind, rolling = self.task.kind, self.rolling
        if kind == "binary":
            p = float(prediction)  # type: ignore[arg-type]
            if not math.isfinite(p):
                p = 0.5  # no opinion: a NaN would poison the rolling metrics
            prediction = p = min(max(p, _PROBA_EPS), 1.0 - _PROBA_EPS)
            error = float((p >= 0.5) != y)
            rolling["rolling_accuracy"].update(y, p >= 0.5)
            rolling["rolling_log_loss"].update(y, {True: p, False: 1.0 - p})
            rolling["rolling_roc_auc"].update(y, p)
        elif kind == "multiclass":
            probs = prediction  # type: ignore[assignment]
            classes = self.task.classes
            guess = classes[max(range(len(classes)), key=probs.__getitem__)]  # type: ignore[index]
            error = float(guess != y)
            rolling["rolling_accuracy"].update(y, guess)
            rolling["rolling_cross_entropy"].update(
                y, {c: max(p, _PROBA_EPS) for c, p in zip(classes, probs, strict=True)})  # type: ignore[arg-type]
        else:
            value = float(prediction)  # type: ignore[arg-type]
            self.label_spread.update(winsorize(self.label_spread, y, self.config.clip_scaled))
            sd = math.sqrt(max(self.label_spread.get(), 0.0))
            miss = abs(y - value)
            error = scaled_miss(miss, sd)
            rolling["rolling_mae"].update(y, value)
            rolling["rolling_rmse"].update(y, value)
        self.learned += 1
        if kind != "regression":
            self.errors += error
        return Outcome(event_id=event_id, label=y, prediction=prediction, error=error,
                       drift=self._detect(error, event_id))

    def _detect(self, error: float, event_id: str | None) -> DriftSignal | None:
        before = getattr(self.detector, "estimation", math.nan)
        self.detector.update(error)
        if self.recent_errors.maxlen:
            self.recent_errors.append(error)
        if not self.detector.drift_detected:
            return None
        self.detections += 1
        after = getattr(self.detector, "estimation", math.nan)
        post_change, cut = estimate_post_change(self.recent_errors, self.detector)
        self.recent_errors.clear()  # river restarts the detector on its next update
        worse = not (after <= before)  # NaN (no estimate) counts as worsening
        if self.learned <= self.config.warmup or not (self.config.signal == "any" or worse):
            return None
        signal = DriftSignal(learned=self.learned, event_id=event_id,
                             detector=self.config.drift_detector,
                             error_before=before, error_after=after,
                             post_change=post_change, cut=cut)
        self.pending_signals.append(signal)
        return signal

    # ---------------------------------------------------------------- reading
    def drain_signals(self) -> list[DriftSignal]:
        """Drift signals not yet taken by the caller (the service turns them into requests)."""
        out, self.pending_signals = self.pending_signals, []
        return out

    def metrics(self) -> dict[str, float]:
        """Cumulative counts and the task's rolling metrics (see the module doc):
        classification ``error_rate`` and ``rolling_accuracy``, binary ``rolling_log_loss``
        and ``rolling_roc_auc``, multiclass ``rolling_cross_entropy``, regression
        ``rolling_mae`` and ``rolling_rmse``."""
        out = {"learned": float(self.learned)}
        if self.task.kind != "regression":
            out["error_rate"] = self.errors / self.learned if self.learned else math.nan
        out.update({name: float(m.get()) for name, m in self.rolling.items()})
        out.update({"detections": float(self.detections),
                    "refused_values": float(self.refused_values),
                    "refused_updates": float(self.refused_updates)})
        return out


def _p_true(proba: Mapping[Any, float]) -> float:
    """P(True) from river's dict; an untrained model's empty dict means no opinion (0.5)."""
    if not proba:
        return 0.5
    if True in proba:
        return float(proba[True])
    return 1.0 - float(proba.get(False, 1.0))


def _class_probabilities(classes: Sequence[int], proba: Mapping[Any, float]) -> tuple[float, ...]:
    """River's ``{class: p}`` as one probability per declared class, summing to 1.

    A class the estimator has not met is 0; with no usable probability at all (nothing
    learned yet, or non-finite values) every class is equally likely.
    """
    values = [float(proba.get(c, 0.0)) for c in classes]
    values = [v if math.isfinite(v) and v > 0.0 else 0.0 for v in values]
    total = sum(values)
    if total <= 0.0:
        return tuple(1.0 / len(classes) for _ in classes)
    return tuple(v / total for v in values)
