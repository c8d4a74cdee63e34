"""Answer a prediction with both models: the online learner and the registry's champion.

The online model is the learner in the newest local snapshot that verifies (see the
trust boundary in :mod:`services.online.state`: only this service's local snapshots
are unpickled, after their sha256 and optional HMAC check). The champion is the
registry version under the ``champion`` alias, loaded by
:meth:`services.registry.store.ModelRegistry.load` (sha256 of every file checked,
``torch.load(weights_only=True)``). Each side answers on its own: when one is
unavailable (no snapshot yet, no champion yet) its entry says why and the other
still answers.

Each side answers in the form of its model's task (:mod:`services.model.task`):

* binary -- ``{"proba": 0.083}``: P(label = 1);
* multiclass -- ``{"probabilities": {"0": 0.1, "1": 0.7, "2": 0.2}, "label": 1}``: one
  probability per declared class (JSON keys are strings; a class the online learner has
  not met yet is 0) and the most probable class;
* regression -- ``{"value": 1234.5}``: the prediction in the label's units;

beside ``version``, ``learned`` (online), ``created_at``, or an ``error`` instead of the
prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from services.model.task import Task
from services.online.learner import OnlineLearner
from services.online.state import OnlineState, SnapshotError, SnapshotStore, snapshot_dir
from streams.settings import Settings

PREDICTION_FIELDS = ("proba", "probabilities", "label", "value")
"""The fields of an answer that carry the prediction (by task, see the module doc)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One model's answer in its task's form (see the module doc), or why it has none."""

    source: str  # "online" or "champion"
    proba: float | None = None  # binary: P(label == 1)
    probabilities: dict[str, float] | None = None  # multiclass: class -> probability
    label: int | None = None  # multiclass: the most probable class
    value: float | None = None  # regression: in the label's units
    version: int | None = None  # champion version, or the snapshot's sequence number
    learned: int | None = None  # online: labelled events the learner has learned
    created_at: str | None = None
    error: str | None = None

    @property
    def finite(self) -> bool:
        """Whether every number of the prediction is finite (JSON has no NaN)."""
        numbers = [v for v in (self.proba, self.value) if v is not None]
        numbers += list((self.probabilities or {}).values())
        return all(math.isfinite(v) for v in numbers)


def prediction_fields(task: Task, prediction: Any) -> dict[str, Any]:
    """The :class:`Answer` fields of one prediction of ``task`` (a learner's or a
    :class:`~services.model.scoring.Scorer` row's)."""
    if task.kind == "multiclass":
        probs = [float(p) for p in np.asarray(prediction, dtype=np.float64).reshape(-1)]
        if len(probs) != len(task.classes):
            raise ValueError(f"{len(task.classes)} class probabilities expected, "
                             f"got {len(probs)}")
        out: dict[str, Any] = {"probabilities": {str(c): p for c, p in
                                                 zip(task.classes, probs, strict=True)}}
        if all(math.isfinite(p) for p in probs):
            out["label"] = task.classes[int(np.argmax(probs))]
        return out
    value = float(np.asarray(prediction, dtype=np.float64).reshape(-1)[0])
    return {"proba": value} if task.kind == "binary" else {"value": value}


def snapshot_store(settings: Settings) -> SnapshotStore:
    """The online service's snapshot store (same directory and key file as the service)."""
    return SnapshotStore(snapshot_dir(settings), key_file=settings.online.snapshot_key_file)


def online_learner(store: SnapshotStore, model: str) -> tuple[OnlineLearner, int, str]:
    """The model's learner from the newest snapshot that verifies, its seq and time."""
    refused: list[str] = []
    for info in store.list():
        try:
            state, _ = store.load(info)
        except SnapshotError as exc:
            refused.append(str(exc))
            continue
        learners = state.learners if isinstance(state, OnlineState) else {state.spec.model: state}
        if model not in learners:
            raise LookupError(f"the newest snapshot has no learner for {model!r}")
        return learners[model], info.seq, info.created_at
    raise LookupError("no usable online snapshot" + (": " + "; ".join(refused) if refused else ""))


def online_answer(learner: OnlineLearner, features: Mapping[str, Any], **meta: Any) -> Answer:
    """The learner's prediction for one event as an :class:`Answer` (``meta``: version,
    learned, created_at). Raises ``ValueError``/``TypeError`` for unusable features."""
    fields = prediction_fields(learner.task, learner.predict(features))
    return Answer("online", **fields, **meta)


def predict_online(
    settings: Settings, model: str, features: Mapping[str, Any],
    store: SnapshotStore | None = None,
) -> Answer:
    """The online learner's prediction from its latest snapshot."""
    try:
        learner, seq, created = online_learner(store or snapshot_store(settings), model)
        return online_answer(learner, features, version=seq, learned=learner.learned,
                             created_at=created)
    except (LookupError, SnapshotError, ValueError, TypeError) as exc:
        return Answer("online", error=str(exc))


def predict_champion(
    settings: Settings, model: str, features: Mapping[str, Any], registry: Any = None,
) -> Answer:
    """The registry champion's prediction (verified load), in its version's task."""
    from services.model.scoring import Scorer
    from services.registry.store import ModelRegistry, RegistryError

    reg = registry or ModelRegistry(settings.registry_uri)
    try:
        loaded = reg.load(model, "champion")
        scorer = Scorer.from_loaded(loaded)
        fields = prediction_fields(scorer.task, scorer.predict([dict(features)])[0])
    except (RegistryError, FileNotFoundError, KeyError, ValueError) as exc:
        return Answer("champion", error=str(exc))
    return Answer("champion", **fields, version=loaded.version,
                  created_at=loaded.manifest.created_at.isoformat())


def answer_doc(answer: Answer, *, strict_json: bool = False) -> dict[str, Any]:
    """An :class:`Answer` as plain data; a non-finite prediction gets an ``error``.

    ``strict_json`` (the HTTP endpoint) also leaves that prediction out, since JSON has
    no NaN or infinity; the CLI keeps it beside the error.
    """
    doc = {k: v for k, v in asdict(answer).items() if v is not None and k != "source"}
    if not answer.finite:
        if strict_json:
            for key in PREDICTION_FIELDS:
                doc.pop(key, None)
        doc["error"] = "non-finite prediction"
    return doc


def answered(doc: Mapping[str, Any]) -> bool:
    """Whether one side's plain-data answer holds a usable prediction."""
    return "error" not in doc and any(key in doc for key in PREDICTION_FIELDS)


def predict(
    settings: Settings, model: str, features: Mapping[str, Any], *,
    store: SnapshotStore | None = None, registry: Any = None,
) -> dict[str, Any]:
    """Both answers as plain data: ``{"model", "online": {...}, "champion": {...}}``."""
    out: dict[str, Any] = {"model": model}
    for answer in (predict_online(settings, model, features, store),
                   predict_champion(settings, model, features, registry)):
        out[answer.source] = answer_doc(answer)
    return out
