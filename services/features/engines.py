"""One set of feature definitions for every offline engine.

The repo's views read parquet parts through ``FileSource`` (what Feast's file and
DuckDB offline stores take). Feast's Spark offline store only takes ``SparkSource``;
rather than a second copy of the definitions, the sources are rebuilt for the engine
that the store's ``offline_store.type`` names: same name, path, timestamp and created
columns, field mapping and description, so the same parts and the same views serve
DuckDB, the file store and Spark. The type string alone selects the engine.
"""

from __future__ import annotations

from typing import Any

SPARK_TYPES = frozenset({"spark", "feast.infra.offline_stores.contrib.spark_offline_store"
                         ".spark.SparkOfflineStore"})


def is_spark(offline_type: str) -> bool:
    """Whether ``offline_store.type`` names Feast's Spark offline store."""
    return offline_type in SPARK_TYPES


def _spark_source(source: Any) -> Any:
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
        SparkSource,
    )

    return SparkSource(
        name=source.name,
        path=source.path,
        file_format="parquet",
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column,
        field_mapping=dict(source.field_mapping),
        description=source.description,
        tags=dict(source.tags),
        owner=source.owner,
    )


def adapt_sources(objects: list[Any], offline_type: str) -> list[Any]:
    """The repo's objects with their batch sources built for ``offline_type``.

    Parquet ``FileSource``s become ``SparkSource``s for Spark; other engines get the
    objects unchanged. Push sources and feature views are updated in place so that a
    view, its push source and the registry agree on one source object.
    """
    if not is_spark(offline_type):
        return objects
    from feast import FeatureView, FileSource, PushSource

    rebuilt: dict[str, Any] = {}

    def convert(source: Any) -> Any:
        if not isinstance(source, FileSource):
            return source
        if source.name not in rebuilt:
            rebuilt[source.name] = _spark_source(source)
        return rebuilt[source.name]

    out: list[Any] = []
    for obj in objects:
        if isinstance(obj, PushSource):
            obj.batch_source = convert(obj.batch_source)
        elif isinstance(obj, FeatureView):
            obj.batch_source = convert(obj.batch_source)
            if isinstance(obj.stream_source, PushSource):
                obj.stream_source.batch_source = obj.batch_source
        elif isinstance(obj, FileSource):
            obj = convert(obj)
        out.append(obj)
    return out




def load_saved_dataset(store: Any, name: str) -> tuple[Any, Any]:
    """A saved dataset (a snapshot's parquet file) and its rows as a pandas frame.

    Through the store where it can; Feast 0.67's Spark store cannot read saved datasets
    back (it refuses file storage, and ``SavedDatasetSparkStorage.to_data_source``
    builds a ``SparkSource`` without a name, which fails), so on Spark the dataset comes
    from the registry and its file is read directly: one parquet file, checked against
    its sha256 by the caller.
    """
    if not is_spark(store.config.offline_store.type):
        dataset = store.get_saved_dataset(name)
        return dataset, dataset.to_df()
    import pyarrow.parquet as pq

    dataset = store.registry.get_saved_dataset(name, store.project)
    return dataset, pq.read_table(dataset.storage.file_options.uri).to_pandas()
