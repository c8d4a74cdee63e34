"""OpenTelemetry instruments of the online learner: rolling metrics as gauges, counters.

The rolling metrics of each model's learner are *observable* gauges: the SDK asks for
them at each collection, and the service answers from the values it published after its
last batch (a plain dict swapped atomically), so the collection thread never reads river
objects while the loop updates them. Each task reports its own, under their own names
(a model reports only those of its task): binary accuracy, log loss and ROC AUC;
multiclass accuracy and cross-entropy; regression MAE and RMSE (in the label's units).

Instruments are created once per meter (an SDK meter refuses a second instrument of
the same name), and every live :class:`OnlineMetrics` on that meter is asked at each
collection; a restarted service in the same process (tests) does not double-register.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from opentelemetry.metrics import CallbackOptions, Counter, Meter, Observation

from services.observability import attributes as attr

GAUGES = {
    "rolling_accuracy": ("driftloop.online.rolling_accuracy",
                         "Accuracy of the online learner over its recent labelled events"),
    "rolling_log_loss": ("driftloop.online.rolling_log_loss",
                         "Log loss of the online learner over its recent labelled events "
                         "(binary models)"),
    "rolling_roc_auc": ("driftloop.online.rolling_roc_auc",
                        "ROC AUC of the online learner over its recent labelled events "
                        "(binary models)"),
    "rolling_cross_entropy": ("driftloop.online.rolling_cross_entropy",
                              "Cross-entropy of the online learner over its recent labelled "
                              "events (multiclass models)"),
    "rolling_mae": ("driftloop.online.rolling_mae",
                    "Mean absolute error of the online learner over its recent labelled "
                    "events, in label units (regression models)"),
    "rolling_rmse": ("driftloop.online.rolling_rmse",
                     "Root mean squared error of the online learner over its recent labelled "
                     "events, in label units (regression models)"),
}


@dataclass
class _Instruments:
    learned: Counter
    detections: Counter
    redelivered: Counter
    snapshots: Counter
    refused: Counter
    sources: weakref.WeakSet[OnlineMetrics] = field(default_factory=weakref.WeakSet)


_by_meter: dict[int, tuple[Meter, _Instruments]] = {}
_lock = threading.Lock()


def _instruments(meter: Meter) -> _Instruments:
    with _lock:
        found = _by_meter.get(id(meter))
        if found is not None and found[0] is meter:
            return found[1]
        inst = _Instruments(
            learned=meter.create_counter(
                "driftloop.online.learned", unit="{event}",
                description="Labelled events learned (predicted, then learned), by model"),
            detections=meter.create_counter(
                "driftloop.online.detections", unit="{detection}",
                description="Concept-drift detections on the learner's error stream, by model"),
            redelivered=meter.create_counter(
                "driftloop.online.redelivered", unit="{message}",
                description="Messages already covered by the learner's state, skipped"),
            snapshots=meter.create_counter(
                "driftloop.online.snapshots", unit="{snapshot}",
                description="Snapshots of the online state written with their offsets"),
            refused=meter.create_counter(
                "driftloop.online.refused_updates", unit="{update}",
                description="Non-finite inputs left out and updates undone (state restored "
                            "to its last good copy), by model"),
        )
        for key, (name, description) in GAUGES.items():
            meter.create_observable_gauge(
                name, callbacks=[_callback(inst, key)], unit="", description=description)
        _by_meter[id(meter)] = (meter, inst)
        return inst


def _callback(
    inst: _Instruments, key: str
) -> Callable[[CallbackOptions], Iterator[Observation]]:
    def observe(options: CallbackOptions) -> Iterator[Observation]:
        for source in list(inst.sources):
            for model, values in source.published.items():
                value = values.get(key)
                if value is not None and value == value:  # skip NaN (nothing learned yet)
                    yield Observation(value, {attr.MODEL: model})

    return observe


class OnlineMetrics:
    """The online service's instruments on one meter."""

    def __init__(self, meter: Meter) -> None:
        self._inst = _instruments(meter)
        self._inst.sources.add(self)
        self.published: Mapping[str, Mapping[str, float]] = {}

    def publish(self, per_model: Mapping[str, Mapping[str, float]]) -> None:
        """Values the gauges report until the next call (per model: learner.metrics())."""
        self.published = {m: dict(v) for m, v in per_model.items()}

    def learned(self, model: str, count: int) -> None:
        self._inst.learned.add(count, {attr.MODEL: model})

    def detection(self, model: str) -> None:
        self._inst.detections.add(1, {attr.MODEL: model})

    def redelivered(self, topic: str, count: int = 1) -> None:
        self._inst.redelivered.add(count, {attr.MESSAGING_DESTINATION_NAME: topic})

    def refused(self, model: str, count: int) -> None:
        self._inst.refused.add(count, {attr.MODEL: model})

    def snapshot(self) -> None:
        self._inst.snapshots.add(1)

    def close(self) -> None:
        """Stop reporting this service's gauges."""
        self._inst.sources.discard(self)
        self.published = {}
