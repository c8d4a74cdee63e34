"""Online learner: a river pipeline learned per labelled event, with a drift detector on its error.

Why: the batch model is retrained only when the drift monitor sees the *inputs* move. A
concept change (same inputs, new relation to the label) shows up only in the error of a
model that keeps learning, so this learner runs progressive validation (predict, then
learn, per labelled event) and feeds its 0/1 error to a drift detector (ADWIN by default).
A detection where the error *rose* becomes a :class:`DriftSignal`; the service turns it
into a retrain request through the shared ``RetrainTrigger`` (no policy lives here).

The pipeline is built from the model's :class:`~services.featurespec.ModelSpec`:
numeric features are selected and standardised, categorical ones one-hot encoded, the
two joined with a ``TransformerUnion`` and fed to the estimator (logistic regression by
default). Any river estimator or detector can be configured by dotted name relative to
the ``river`` package (``"tree.HoeffdingAdaptiveTreeClassifier"``) and plain parameters;
names are resolved only inside ``river.`` and must name a class of the expected kind.

Poison guard: numeric inputs that are not finite are left out (counted in
``refused_values``), finite ones clipped to ``clip_abs``, and standardised values clipped
to ``clip_scaled`` running standard deviations before they reach the scaler's moments
and again after scaling (:class:`WinsorizingScaler`), so one extreme event cannot blow
the weights up.
After every update the learner checks that its state (weights, intercept, scaler
moments) is still finite; if not, the update is refused: the last good copy (taken every
``good_every`` learned events) is restored and ``refused_updates`` counted.

Missing values: a feature that is ``None`` (or absent) is left out of the event's dict,
which river's linear models read as 0 after scaling (mean imputation). The mini-batch
path (``learn_many``) is taken only for complete batches of an estimator that supports
it; a batch with a missing value goes through the per-event path, so both paths see the
same inputs.
"""

from __future__ import annotations

import copy
import importlib
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from river import base, compose, metrics, preprocessing, utils

from services.featurespec import ModelSpec
from services.online.config import LearnerSettings

_DOTTED = re.compile(r"^(?:[a-z][a-z0-9_]*\.)+[A-Z][A-Za-z0-9]*$")
_PROBA_EPS = 1e-7


class RiverNameError(ValueError):
    """A configured dotted name does not name an allowed river class."""


def resolve_river_class(dotted: str, kind: type | tuple[type, ...]) -> type:
    """The class ``river.<dotted>``, checked to be a subclass of ``kind``.

    Only modules under ``river.`` are imported; private segments and anything that is not
    a class of the expected kind are refused.
    """
    if not isinstance(dotted, str) or not _DOTTED.match(dotted):
        raise RiverNameError(f"not a river class name like 'module.Class': {dotted!r}")
    module_name, _, cls_name = dotted.rpartition(".")
    if any(part.startswith("_") for part in module_name.split(".")):
        raise RiverNameError(f"private module in {dotted!r}")
    try:
        module = importlib.import_module(f"river.{module_name}")
    except ImportError as exc:
        raise RiverNameError(f"no module river.{module_name}") from exc
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type) or not cls.__module__.startswith("river."):
        raise RiverNameError(f"river.{dotted} is not a river class")
    if not issubclass(cls, kind):
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise RiverNameError(f"river.{dotted} is not a {names}")
    return cls


def build_river_object(
    dotted: str, params: Mapping[str, Any], kind: type | tuple[type, ...]
) -> Any:
    """Instantiate ``river.<dotted>(**params)``.

    A parameter value ``{"river": "module.Class", "params": {...}}`` is built the same way
    (any river base object), so nested estimators and optimizers can be configured.
    """
    cls = resolve_river_class(dotted, kind)
    return cls(**{k: _build_param(v) for k, v in params.items()})


def _build_param(value: Any) -> Any:
    if isinstance(value, Mapping) and set(value) <= {"river", "params"} and "river" in value:
        return build_river_object(value["river"], value.get("params", {}), base.Base)
    if isinstance(value, list):
        return [_build_param(v) for v in value]
    return value


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


_STATE_ATTRIBUTES = ("weights", "intercept", "means", "vars", "counts")


def _all_finite(value: Any) -> bool:
    if isinstance(value, bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_all_finite(v) for v in value.values())
    return True


def state_is_finite(obj: Any) -> bool:
    """Whether a river pipeline's numeric state (weights, intercept, scaler moments) is finite."""
    if isinstance(obj, compose.Pipeline):
        return all(state_is_finite(step) for step in obj.steps.values())
    if isinstance(obj, compose.TransformerUnion):
        return all(state_is_finite(t) for t in obj.transformers.values())
    return all(_all_finite(getattr(obj, name, None)) for name in _STATE_ATTRIBUTES)


class LearnerConfig(LearnerSettings):
    """:class:`LearnerSettings` that can build its river estimator and detector."""

    def make_estimator(self) -> base.Classifier:
        """A fresh estimator instance (validated river classifier)."""
        return build_river_object(self.estimator, self.params, base.Classifier)

    def make_detector(self) -> base.DriftDetector | base.BinaryDriftDetector:
        """A fresh drift detector instance (validated river detector)."""
        kinds = (base.DriftDetector, base.BinaryDriftDetector)
        return build_river_object(self.drift_detector, self.drift_params, kinds)


def build_pipeline(spec: ModelSpec, config: LearnerConfig) -> compose.Pipeline:
    """Select+scale numeric features, select+one-hot categorical ones, union, estimator."""
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
    return compose.Pipeline(features, config.make_estimator())


@dataclass(frozen=True, slots=True)
class DriftSignal:
    """A concept-drift detection on the learner's error stream."""

    learned: int  # events learned when it fired
    event_id: str | None
    detector: str
    error_before: float  # detector's error estimate just before the detection
    error_after: float  # ... and right after (the recent window)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Progressive-validation result of one labelled event (predicted before learning)."""

    event_id: str | None
    label: bool
    proba: float  # predicted P(label == 1) before learning this event
    error: bool
    drift: DriftSignal | None = None


class OnlineLearner:
    """Progressive-validation learner with rolling metrics and a drift detector.

    >>> from services.featurespec import FeatureSpec, ModelSpec
    >>> spec = ModelSpec("m", "user", (FeatureSpec("x", "numeric"),))
    >>> lr = OnlineLearner(spec)
    >>> out = lr.learn_one({"x": 1.0}, 1.0, event_id="e1")
    >>> out.proba, lr.learned
    (0.5, 1)
    """

    def __init__(self, spec: ModelSpec, config: LearnerConfig | None = None) -> None:
        self.spec = spec
        self.config = config or LearnerConfig()
        self.uid = uuid.uuid4().hex  # names this learner's lineage (retrain request ids)
        self.pipeline = build_pipeline(spec, self.config)
        self.detector = self.config.make_detector()
        w = self.config.rolling_window
        self.accuracy = utils.Rolling(metrics.Accuracy, window_size=w)
        self.log_loss = utils.Rolling(metrics.LogLoss, window_size=w)
        self.roc_auc = metrics.RollingROCAUC(window_size=w)
        self.learned = 0
        self.errors = 0
        self.detections = 0
        self.pending_signals: list[DriftSignal] = []
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
        state.setdefault("refused_values", 0)
        state.setdefault("refused_updates", 0)
        config = state.get("config")
        if config is not None and "good_every" not in config.__dict__:
            # A snapshot from before the poison guard: its config lacks the new fields.
            state["config"] = LearnerConfig.model_validate(dict(config.__dict__))
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
            self.pipeline = build_pipeline(self.spec, self.config)
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

    @staticmethod
    def _label(label: float) -> bool:
        if label not in (0.0, 1.0):
            raise ValueError(f"binary label expected (0 or 1), got {label!r}")
        return label == 1.0

    @property
    def supports_many(self) -> bool:
        """Whether the estimator has a vectorised mini-batch path."""
        mode = self.config.mini_batch
        if mode == "never" or (mode == "auto" and self._categorical):
            return False
        est = self.pipeline.steps[next(reversed(self.pipeline.steps))]
        return hasattr(est, "learn_many") and hasattr(est, "predict_proba_many")

    # ------------------------------------------------------------- predicting
    def predict_proba(self, features: Mapping[str, Any]) -> float:
        """P(label == 1) for one event, without learning."""
        return _p_true(self.pipeline.predict_proba_one(self.prepare(features)))

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
        p = _p_true(self.pipeline.predict_proba_one(x))
        self.pipeline.learn_one(x, y)
        return self._after(event_id, y, p)

    def learn_many(
        self,
        rows: Sequence[Mapping[str, Any]],
        labels: Sequence[float],
        event_ids: Sequence[str | None] | None = None,
    ) -> list[Outcome]:
        """Progressive validation over a mini-batch: predict all, then learn all.

        Uses the estimator's ``predict_proba_many``/``learn_many`` on a pandas frame when it
        has them and the batch has no missing value; otherwise learns event by event.
        Batches longer than ``config.max_batch`` are learned in consecutive pieces.
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
        proba = self.pipeline.predict_proba_many(frame)
        if True in proba.columns:
            p_true = proba[True].tolist()
        elif False in proba.columns:
            p_true = (1.0 - proba[False]).tolist()
        else:
            p_true = [0.5] * len(xs)
        self.pipeline.learn_many(frame, pd.Series(ys))
        out = [self._after(i, y, p) for i, y, p in zip(ids, ys, p_true, strict=True)]
        self._guard()
        return out

    def _after(self, event_id: str | None, y: bool, p: float) -> Outcome:
        if not math.isfinite(p):
            p = 0.5  # no opinion: a NaN would poison the rolling metrics
        p = min(max(p, _PROBA_EPS), 1.0 - _PROBA_EPS)
        error = (p >= 0.5) != y
        self.learned += 1
        self.errors += error
        self.accuracy.update(y, p >= 0.5)
        self.log_loss.update(y, {True: p, False: 1.0 - p})
        self.roc_auc.update(y, p)
        before = getattr(self.detector, "estimation", math.nan)
        self.detector.update(float(error))
        signal = None
        if self.detector.drift_detected:
            self.detections += 1
            after = getattr(self.detector, "estimation", math.nan)
            worse = not (after <= before)  # NaN (no estimate) counts as worsening
            if self.learned > self.config.warmup and (self.config.signal == "any" or worse):
                signal = DriftSignal(
                    learned=self.learned,
                    event_id=event_id,
                    detector=self.config.drift_detector,
                    error_before=before,
                    error_after=after,
                )
                self.pending_signals.append(signal)
        return Outcome(event_id=event_id, label=y, proba=p, error=error, drift=signal)

    # ---------------------------------------------------------------- reading
    def drain_signals(self) -> list[DriftSignal]:
        """Drift signals not yet taken by the caller (the service turns them into requests)."""
        out, self.pending_signals = self.pending_signals, []
        return out

    def metrics(self) -> dict[str, float]:
        """Rolling accuracy, log loss, ROC AUC and cumulative counts."""
        return {
            "learned": float(self.learned),
            "error_rate": self.errors / self.learned if self.learned else math.nan,
            "rolling_accuracy": self.accuracy.get(),
            "rolling_log_loss": self.log_loss.get(),
            "rolling_roc_auc": self.roc_auc.get(),
            "detections": float(self.detections),
            "refused_values": float(self.refused_values),
            "refused_updates": float(self.refused_updates),
        }


def _p_true(proba: Mapping[Any, float]) -> float:
    """P(True) from river's dict; an untrained model's empty dict means no opinion (0.5)."""
    if not proba:
        return 0.5
    if True in proba:
        return float(proba[True])
    return 1.0 - float(proba.get(False, 1.0))
