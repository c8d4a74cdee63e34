"""Where the drift monitor gets what it compares against: spec, champion, profile.

The default :class:`FeastReferences` reads the model's features from its Feast
FeatureService, the champion version from the registry's ``champion`` alias, and
that version's training snapshot's profile (cached by snapshot id); for a model that
declares a cycle (``drift.seasonality``) also the snapshot's rows with their event
times, read once per reference, so each window can be compared with the rows of its
phase (:mod:`services.drift.season`). Tests and benchmarks of models outside the Feast
repo pass a :class:`StaticReferences`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from services.drift.profile import ReferenceProfile
from services.featurespec import ModelSpec
from streams.settings import Settings

if TYPE_CHECKING:
    from services.drift.season import ReferenceRows

log = logging.getLogger(__name__)


class UnknownModelError(LookupError):
    """The model has no FeatureService: its events cannot be monitored."""


@dataclass(frozen=True)
class ModelReference:
    """What one model's windows are compared with."""

    spec: ModelSpec
    profile: ReferenceProfile
    champion_version: int | None
    # the reference's rows and event times: needed only under a declared cycle
    rows: ReferenceRows | None = None

    @property
    def snapshot_id(self) -> str:
        return self.profile.snapshot_id


class ReferenceProvider(Protocol):
    """Resolves a model's current reference."""

    def reference_for(self, model: str) -> ModelReference | None:
        """The champion's reference; ``None`` when the model has no champion yet.

        Raises :class:`UnknownModelError` for a model nobody declared.
        """
        ...


class StaticReferences:
    """Fixed references by model name (tests, benchmarks, ``drift check``)."""

    def __init__(self, references: dict[str, ModelReference]) -> None:
        self.references = dict(references)

    def reference_for(self, model: str) -> ModelReference | None:
        try:
            return self.references[model]
        except KeyError:
            raise UnknownModelError(f"no reference declared for model {model!r}") from None


class FeastReferences:
    """Spec from the FeatureService, champion from the registry, profile from Feast."""

    def __init__(self, settings: Settings, *, store: Any = None, registry: Any = None) -> None:
        self._settings = settings
        self._store = store
        self._registry = registry
        self._specs: dict[str, ModelSpec] = {}
        self.cache_root = Path(settings.state_dir) / "profiles"

    @property
    def store(self) -> Any:
        if self._store is None:
            from services.features.feast_repo import open_store

            self._store = open_store(self._settings)
        return self._store

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from services.registry.store import ModelRegistry

            self._registry = ModelRegistry(self._settings.registry_uri)
        return self._registry

    def _spec(self, model: str) -> ModelSpec:
        spec = self._specs.get(model)
        if spec is None:
            from feast.errors import FeatureServiceNotFoundException

            from services.features.feast_repo import load_model_spec

            try:
                spec = load_model_spec(self.store, model)
            except FeatureServiceNotFoundException as exc:
                raise UnknownModelError(f"model {model!r} has no FeatureService") from exc
            self._specs[model] = spec
        return spec

    def reference_for(self, model: str) -> ModelReference | None:
        from services.features.snapshot import load_profile_for_snapshot

        spec = self._spec(model)
        version = self.registry.get_alias(model, "champion")
        if version is None:
            return None
        snapshot_id = self.registry.manifest(model, version).lineage.training_snapshot_id
        profile = load_profile_for_snapshot(self.store, spec, snapshot_id, self.cache_root)
        log.info("%s: reference is champion v%d's snapshot %s", model, version, snapshot_id)
        rows = None
        if self._settings.model(model).drift.seasonality is not None:
            from services.drift.season import ReferenceRows
            from services.features.feast_repo import TIMESTAMP_COLUMN
            from services.features.snapshot import load_snapshot_frame

            frame = load_snapshot_frame(self.store, snapshot_id)
            rows = ReferenceRows.from_frame(frame, spec, TIMESTAMP_COLUMN)
        return ModelReference(spec=spec, profile=profile, champion_version=version, rows=rows)
