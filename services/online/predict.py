"""Answer a prediction with both models: the online learner and the registry's champion.

The online model is the learner in the newest local snapshot that verifies (see the
trust boundary in :mod:`services.online.state`: only this service's local snapshots
are unpickled, after their sha256 and optional HMAC check). The champion is the
registry version under the ``champion`` alias, loaded by
:meth:`services.registry.store.ModelRegistry.load` (sha256 of every file checked,
``torch.load(weights_only=True)``). Each side answers on its own: when one is
unavailable (no snapshot yet, no champion yet) its entry says why and the other
still answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from services.online.learner import OnlineLearner
from services.online.state import OnlineState, SnapshotError, SnapshotStore, snapshot_dir
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class Answer:
    """One model's answer (``proba`` is P(label == 1); ``error`` when it could not answer)."""

    source: str  # "online" or "champion"
    proba: float | None = None
    version: int | None = None  # champion version, or the snapshot's sequence number
    learned: int | None = None  # online: labelled events the snapshot has learned
    created_at: str | None = None
    error: str | None = None


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


def predict_online(
    settings: Settings, model: str, features: Mapping[str, Any],
    store: SnapshotStore | None = None,
) -> Answer:
    """P(label == 1) from the online learner's latest snapshot."""
    try:
        learner, seq, created = online_learner(store or snapshot_store(settings), model)
        proba = learner.predict_proba(features)
    except (LookupError, SnapshotError, ValueError, TypeError) as exc:
        return Answer("online", error=str(exc))
    return Answer("online", proba=proba, version=seq, learned=learner.learned, created_at=created)


def predict_champion(
    settings: Settings, model: str, features: Mapping[str, Any], registry: Any = None,
) -> Answer:
    """P(label == 1) from the registry's champion (verified load)."""
    from services.model.scoring import Scorer
    from services.registry.store import ModelRegistry, RegistryError

    reg = registry or ModelRegistry(settings.registry_uri)
    try:
        loaded = reg.load(model, "champion")
        proba = float(Scorer.from_loaded(loaded).predict([dict(features)])[0])
    except (RegistryError, FileNotFoundError, KeyError, ValueError) as exc:
        return Answer("champion", error=str(exc))
    return Answer("champion", proba=proba, version=loaded.version,
                  created_at=loaded.manifest.created_at.isoformat())


def answer_doc(answer: Answer, *, strict_json: bool = False) -> dict[str, Any]:
    """An :class:`Answer` as plain data; a non-finite probability gets an ``error``.

    ``strict_json`` (the HTTP endpoint) also leaves that probability out, since JSON has
    no NaN or infinity; the CLI keeps it beside the error.
    """
    doc = {k: v for k, v in asdict(answer).items() if v is not None and k != "source"}
    if answer.proba is not None and not math.isfinite(answer.proba):
        if strict_json:
            del doc["proba"]
        doc["error"] = "non-finite probability"
    return doc


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
