"""The repo's one set of definitions, adapted to the offline engine's source class."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.features.engines import adapt_sources, is_spark
from services.features.feast_repo import (
    REPO_DIR,
    YAML_FILES,
    copy_repo,
    load_definitions,
    load_repo_config_dict,
)
from streams.settings import FeastSettings

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _views(objects: list) -> dict:
    from feast import FeatureView

    return {o.name: o for o in objects if isinstance(o, FeatureView)}


def test_spark_gets_spark_sources_with_the_same_columns_and_parts(tmp_path: Path) -> None:
    from feast import FileSource, PushSource
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    repo = copy_repo(tmp_path / "repo")
    files = {name: (v.batch_source.path, v.batch_source.timestamp_field,
                    v.batch_source.created_timestamp_column)
             for name, v in _views(load_definitions(repo)).items()}
    adapted = adapt_sources(load_definitions(repo), "spark")
    views = _views(adapted)
    assert set(views) == set(files) and files
    for name, view in views.items():
        source = view.batch_source
        assert isinstance(source, SparkSource), name
        assert (source.path, source.timestamp_field, source.created_timestamp_column) == (
            files[name])
        assert source.file_format == "parquet"
        assert view.stream_source.batch_source is source  # the push source agrees
    pushes = [o for o in adapted if isinstance(o, PushSource)]
    assert pushes and all(isinstance(p.batch_source, SparkSource) for p in pushes)
    assert not any(isinstance(o, FileSource) for o in adapted)


def test_other_engines_keep_the_file_sources(tmp_path: Path) -> None:
    from feast import FileSource

    repo = copy_repo(tmp_path / "repo")
    for engine in ("duckdb", "file", "services.features.duckdb_store.DuckDBAsofOfflineStore"):
        assert not is_spark(engine)
        views = _views(adapt_sources(load_definitions(repo), engine))
        assert all(isinstance(v.batch_source, FileSource) for v in views.values())


@pytest.mark.parametrize("variant", ["spark", "cluster"])
def test_spark_variants_are_valid_feast_configs(variant: str) -> None:
    from feast.repo_config import RepoConfig

    raw = load_repo_config_dict(FeastSettings(repo=REPO_DIR, variant=variant))
    config = RepoConfig(**raw)
    assert is_spark(raw["offline_store"]["type"])
    assert config.offline_store.spark_conf["spark.sql.session.timeZone"] == "UTC"
    assert variant in YAML_FILES
