"""Open the Feast repo, apply it, and read a model's inputs from its FeatureService.

The FeatureService is the one list of a model's features: ``load_model_spec`` and
``load_layout`` derive everything (names, kinds, the critical tag, which view and
push source each feature lives in, the label) from it and the views it projects.

``import feast`` takes seconds, so it happens inside the functions that need it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from services.features.engines import adapt_sources
from services.features.parts import ensure_parts, list_parts, parts_root
from services.featurespec import FeatureKind, FeatureSpec, ModelSpec
from streams.settings import FeastSettings, Settings

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

REPO_DIR = Path(__file__).resolve().parents[2] / "feature_repo"
"""The checked-in Feast repository."""

YAML_FILES: dict[str, str] = {  # the known variants (FeastSettings.yaml_path names them)
    "embedded": "feature_store.yaml",
    "real": "feature_store.real.yaml",
    "file": "feature_store.file.yaml",  # Feast's file offline store: the baseline
    "spark": "feature_store.spark.yaml",  # Feast's Spark offline store, same parts
    "cluster": "feature_store.cluster.yaml",  # Spark + Redis + SQL registry (deploy/k8s)
}
TIMESTAMP_COLUMN = "event_timestamp"
CREATED_COLUMN = "created"
LABEL_TIME_COLUMN = "label_time"
"""Extra column of a label source: when the label was observed (its event's time)."""

_NUMERIC_TYPES = {"Float32", "Float64", "Int32", "Int64", "Bool"}
_CATEGORICAL_TYPES = {"String"}


class FeastRepoError(RuntimeError):
    """The configured Feast repository cannot be used (the message says what to do)."""


def load_repo_config_dict(feast: FeastSettings) -> dict[str, Any]:
    """The raw ``feature_store*.yaml`` of the configured variant, overrides applied.

    Overrides from the configuration: ``feast.project``, the SQL registry URL
    (``feast.registry_url``) and the Redis connection string (``feast.redis``).
    """
    path = feast.yaml_path().resolve()
    if not path.is_file():
        where = "repository" if not path.parent.is_dir() else f"{path.name} for variant"
        raise FeastRepoError(
            f"no Feast {where} at {path} (variant {feast.variant!r}); set feast.repo "
            f"(DRIFTLOOP_FEAST__REPO) or feast.variant (DRIFTLOOP_FEAST__VARIANT)")
    raw = yaml.safe_load(os.path.expandvars(path.read_text()))
    if feast.project:
        raw["project"] = feast.project
    registry = raw.get("registry")
    if isinstance(registry, dict) and registry.get("registry_type") == "sql" and feast.registry_url:
        registry["path"] = feast.registry_url.get_secret_value()
    online = raw.get("online_store")
    if isinstance(online, dict) and online.get("type") == "redis" and feast.redis:
        online["connection_string"] = feast.redis.get_secret_value()
    return raw


def open_store(settings: Settings | FeastSettings) -> FeatureStore:
    """The ``FeatureStore`` of the configured repository: the one way in for every
    command and service.

    Relative paths in the YAML and in the definitions resolve against the repository,
    so the result does not depend on the working directory.
    """
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    # Every saved-dataset read warns that the API is experimental (DESIGN.md, Feast
    # notes); after Feast's own import-time filters, so that this one comes first.
    warnings.filterwarnings("ignore", message="Retrieving datasets is an experimental feature")
    feast = settings.feast if isinstance(settings, Settings) else settings
    repo = feast.repo.resolve()
    raw = load_repo_config_dict(feast)
    config = RepoConfig(**raw)
    config.repo_path = repo
    (repo / "data").mkdir(exist_ok=True)
    return FeatureStore(repo_path=str(repo), config=config)


def open_repo(
    variant: str = "embedded",
    *,
    repo_path: Path | str = REPO_DIR,
    project: str | None = None,
    registry_url: str | None = None,
    redis: str | None = None,
) -> FeatureStore:
    """:func:`open_store` over an explicit repository (tests, benchmarks, the demo)."""
    return open_store(FeastSettings(
        repo=Path(repo_path), variant=variant, project=project,
        registry_url=registry_url, redis=redis,  # type: ignore[arg-type]
    ))


def copy_repo(dest: Path | str, source: Path | str = REPO_DIR) -> Path:
    """Copy the repo's definitions and YAML (not ``data/``) to ``dest``; returns ``dest``.

    Gives tests and benchmarks a private repo whose data lives in ``dest/data``.
    """
    src, out = Path(source), Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_file() and (item.suffix in {".py", ".yaml", ".md"} or item.name.startswith(".")):
            shutil.copy2(item, out / item.name)
    (out / "data").mkdir(exist_ok=True)
    return out


def load_definitions(repo_path: Path | str) -> list[Any]:
    """Every Feast object defined by the repo's ``*.py`` files (as ``feast apply`` sees them)."""
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    kinds = (Entity, DataSource, FeatureView, FeatureService)
    repo = Path(repo_path).resolve()
    found: dict[tuple[str, str], Any] = {}
    sys.path.insert(0, str(repo))
    try:
        for path in sorted(repo.glob("*.py")):
            if path.name.startswith("_"):
                continue
            name = f"_driftloop_feature_repo_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            for value in vars(module).values():
                if isinstance(value, kinds):
                    found.setdefault((type(value).__name__, value.name), value)
    finally:
        sys.path.remove(str(repo))
    return list(found.values())


def apply_repo(store: FeatureStore) -> list[str]:
    """Programmatic ``feast apply``: register the repo's objects and create their tables.

    Also gives every view's parts directory a zero-row part (with the right schema)
    when it has none yet, so the offline engines can read an empty view.
    Objects removed from the definitions are not deleted. Returns the applied names.
    """
    from feast import FeatureView

    objects = adapt_sources(load_definitions(store.repo_path), store.config.offline_store.type)
    store.apply(objects)
    for obj in objects:
        if isinstance(obj, FeatureView):
            ensure_offline_parts(store, obj)
    return sorted(f"{type(o).__name__}:{o.name}" for o in objects)


def batch_path(store: FeatureStore, view: FeatureView) -> Path:
    """Absolute path of a view's parts directory (its source is ``<dir>/event_date=*/…``)."""
    uri = parts_root(view.batch_source.path)  # type: ignore[union-attr]
    path = Path(uri)
    return path if path.is_absolute() else Path(store.repo_path) / path


@dataclass(frozen=True, slots=True)
class ViewLayout:
    """Where a feature view's rows go: its push source and the exact batch columns."""

    name: str
    push_source: str
    join_keys: tuple[str, ...]
    features: tuple[str, ...]
    kinds: tuple[FeatureKind, ...]
    path: Path
    extra_columns: tuple[str, ...] = ()
    online: bool = True

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column of the batch source, in file order."""
        return (
            *self.join_keys,
            *self.extra_columns,
            *self.features,
            TIMESTAMP_COLUMN,
            CREATED_COLUMN,
        )


@dataclass(frozen=True, slots=True)
class ModelLayout:
    """A model's spec plus where its features and labels are stored."""

    spec: ModelSpec
    event_key: str
    views: tuple[ViewLayout, ...]
    labels: ViewLayout

    @property
    def label_ref(self) -> str:
        """The label's feature reference, ``view:name``."""
        return f"{self.labels.name}:{self.spec.label}"


def _kind(dtype: Any, where: str) -> FeatureKind:
    name = str(dtype)
    if name in _NUMERIC_TYPES:
        return "numeric"
    if name in _CATEGORICAL_TYPES:
        return "categorical"
    raise ValueError(f"{where}: dtype {name} is neither numeric nor categorical")


def _truthy(tags: dict[str, str], key: str) -> bool:
    return tags.get(key, "").strip().lower() in {"1", "true", "yes"}


def _view_layout(store: FeatureStore, view: FeatureView, features: list[Any]) -> ViewLayout:
    push = view.stream_source
    if push is None:
        raise ValueError(f"feature view {view.name} is not fed by a push source")
    return ViewLayout(
        name=view.name,
        push_source=push.name,
        join_keys=tuple(view.join_keys),
        features=tuple(f.name for f in features),
        kinds=tuple(_kind(f.dtype, f"{view.name}.{f.name}") for f in features),
        path=batch_path(store, view),
        online=view.online,
    )


def load_layout(store: FeatureStore, model: str) -> ModelLayout:
    """Read the model's FeatureService (and the views it names) into a ``ModelLayout``.

    The service's tags name the entity key (``entity_key``, the events' ``entity_id``),
    the event key (``event_key``, the events' ``event_id``) and the label
    (``label_view``, ``label``). A field tagged ``critical=true`` is critical.
    """
    service = store.get_feature_service(model, allow_cache=False)
    tags = dict(service.tags)
    missing = {"entity_key", "label_view", "label"} - tags.keys()
    if missing:
        raise ValueError(f"feature service {model} lacks tags {sorted(missing)}")
    event_key = tags.get("event_key", "event_id")
    features: list[FeatureSpec] = []
    views: list[ViewLayout] = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        layout = _view_layout(store, view, list(projection.features))
        views.append(layout)
        for field, kind in zip(projection.features, layout.kinds, strict=True):
            critical = _truthy(dict(field.tags), "critical")
            features.append(FeatureSpec(name=field.name, kind=kind, critical=critical))
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise ValueError(f"feature service {model} projects duplicate feature names")
    label_view = store.get_feature_view(tags["label_view"])
    label_fields = [f for f in label_view.features if f.name == tags["label"]]
    if len(label_fields) != 1:
        raise ValueError(f"label {tags['label']} not in view {label_view.name}")
    labels = _view_layout(store, label_view, label_fields)
    labels = ViewLayout(
        name=labels.name,
        push_source=labels.push_source,
        join_keys=labels.join_keys,
        features=labels.features,
        kinds=labels.kinds,
        path=labels.path,
        extra_columns=(tags["entity_key"], LABEL_TIME_COLUMN),
        online=labels.online,
    )
    spec = ModelSpec(
        model=model,
        entity=tags["entity_key"],
        features=tuple(features),
        label=tags["label"],
        feature_views=tuple(v.name for v in views),
    )
    return ModelLayout(spec=spec, event_key=event_key, views=tuple(views), labels=labels)


def load_model_spec(store: FeatureStore, model: str) -> ModelSpec:
    """The model's ``ModelSpec``, read only from its FeatureService."""
    return load_layout(store, model).spec


def arrow_schema(view: ViewLayout) -> Any:
    """The parquet schema of a view's batch source."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    fields = [(k, pa.string()) for k in view.join_keys]
    for extra in view.extra_columns:
        fields.append((extra, ts if extra == LABEL_TIME_COLUMN else pa.string()))
    for name, kind in zip(view.features, view.kinds, strict=True):
        fields.append((name, pa.float64() if kind == "numeric" else pa.string()))
    fields += [(TIMESTAMP_COLUMN, ts), (CREATED_COLUMN, ts)]
    return pa.schema(fields)


def ensure_offline_parts(store: FeatureStore, view: FeatureView) -> Path:
    """Give ``view``'s parts directory a zero-row part when it has no part yet."""
    path = batch_path(store, view)
    if not list_parts(path):
        push = view.stream_source
        extra: tuple[str, ...] = ()
        if view.tags.get("role") == "label":
            extra = _label_extras(store, view.name)
        layout = ViewLayout(
            name=view.name,
            push_source=push.name if push else "",
            join_keys=tuple(view.join_keys),
            features=tuple(f.name for f in view.features),
            kinds=tuple(_kind(f.dtype, f"{view.name}.{f.name}") for f in view.features),
            path=path,
            extra_columns=extra,
        )
        ensure_parts(path, arrow_schema(layout))
    return path


def _label_extras(store: FeatureStore, view_name: str) -> tuple[str, ...]:
    for service in store.list_feature_services():
        if service.tags.get("label_view") == view_name:
            return (service.tags["entity_key"], LABEL_TIME_COLUMN)
    return (LABEL_TIME_COLUMN,)


def drop_project(store: FeatureStore) -> None:
    """Remove this store's project only: its online tables and its registry entries.

    ``FeatureStore.teardown`` deletes *every* project in the registry, which on a
    shared SQL registry would wipe other users' projects; this does not.
    """
    views = store.list_feature_views()
    entities = store.list_entities()
    store._get_provider().teardown_infra(store.project, views, entities)
    store.registry.delete_project(store.project, commit=True)
