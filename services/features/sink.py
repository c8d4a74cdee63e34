"""Write ingest batches: online through Feast, offline as new parquet parts.

Feast's offline push to a file source reads the whole parquet file and writes it back
(in place: a crash in between tears it), so its cost grows with the history and two
writers lose rows. The offline half is therefore written here, as new immutable parts
in the view's parts directory (:mod:`services.features.parts`), which the view's
FileSource reads through DuckDB (or any engine). Only the online half goes through
Feast. A view without a parts directory (``path`` unset) falls back to Feast's push.

The online half is written with Feast's own ``online_write_batch`` (the provider's,
hence the configured online store's: SQLite embedded, Redis in a cluster), one
call and one transaction per view and flush, with the entity-key and value protos
built here straight from the frame's columns: Feast's ``push`` does the same after a
registry lookup and a generic Arrow-to-proto conversion that cost more than the
write itself (``benchmarks/ingest.md``). The rows and their protos are what ``push``
would write (``_online_rows``; a test compares both through ``get_online_features``);
a view ``push`` would treat differently (an on-demand view, a field mapping, a
feature service that precomputes online vectors) goes through ``push``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.features.feast_repo import TIMESTAMP_COLUMN
from services.features.ingest import PushBatch
from services.features.parts import write_parts

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    import pandas as pd
    import pyarrow as pa
    from feast import FeatureStore


@dataclass(slots=True)
class SinkStats:
    """Counters of what the sink pushed."""

    pushes: int = 0
    rows: int = 0
    seconds: float = 0.0
    parts: int = 0


def push_batches(
    store: FeatureStore, batches: Sequence[PushBatch], stats: SinkStats | None = None
) -> int:
    """Write each batch: its newest row per key online (online views), every row offline.

    The offline parts are written beside the online rows (a second thread); if either
    fails, a retry of the same batch rewrites the same online values and offline rows,
    and the offsets stay uncommitted until both succeeded. A retried batch may leave
    its rows in two parts; the point-in-time join keeps one.
    """
    from feast.data_source import PushMode

    rows = parts = 0
    started = time.perf_counter()
    # the offline parts are written in a second thread meanwhile: Arrow's conversion
    # and parquet writer and both halves' fsyncs release the GIL, so the two halves
    # overlap instead of adding up; every write has finished (or raised) on return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-parts") as pool:
        offline = [pool.submit(append_parts, batch.path, batch.frame, batch.schema)
                   for batch in batches if batch.path is not None]
        try:
            for batch in batches:
                if batch.online is not None and len(batch.online):
                    write_online(store, batch.push_source, batch.online)
                if batch.path is None:
                    store.push(batch.push_source, batch.frame, to=PushMode.OFFLINE)
                rows += len(batch.frame)
        except BaseException:
            for written in offline:  # the flush failed: start no further part
                written.cancel()
            raise
        for written in offline:
            parts += len(written.result())
    if stats is not None:
        stats.pushes += len(batches)
        stats.rows += rows
        stats.parts += parts
        stats.seconds += time.perf_counter() - started
    return rows


def write_online(store: FeatureStore, push_source: str, frame: pd.DataFrame) -> int:
    """Write ``frame`` to the online store of every view fed by ``push_source``.

    What ``store.push(push_source, frame, to=PushMode.ONLINE)`` writes, through the
    provider's ``online_write_batch``; returns the entity rows written.
    """
    from feast.data_source import PushMode

    views = [v for v in store.list_feature_views(allow_cache=True)
             if v.stream_source is not None and v.stream_source.name == push_source]
    if not views or not all(_plain(store, v) for v in views):
        store.push(push_source, frame, to=PushMode.ONLINE)
        return len(frame)
    provider = store._get_provider()  # Feast's own write path, as push uses it
    for view in views:
        if _sqlite_upsert(store, provider, view, frame):
            continue
        rows = _online_rows(view, frame)
        if rows:
            provider.online_write_batch(store.config, view, rows, progress=None)
    return len(frame)


def _sqlite_upsert(store: FeatureStore, provider: Any, view: Any, frame: pd.DataFrame) -> bool:
    """Feast's SQLite ``online_write_batch`` for a view of double features, with one
    ``executemany`` instead of a Python loop of ``execute`` calls (the same statement,
    the same rows, one transaction); ``False`` (nothing written) where the store or the
    view is not that case: Feast's own call writes it then.

    Feast builds, per feature value, a proto, its text and a row in Python, then calls
    ``execute``; here the values are serialised column by column. The rows equal Feast's
    byte for byte (``test_online_write_stores_what_feasts_push_stores``).
    """
    from feast.infra.online_stores.sqlite import SqliteOnlineStore, _quote_id, _table_id

    online, config = getattr(provider, "online_store", None), store.config
    if type(online) is not SqliteOnlineStore or config.online_store.vector_enabled:
        return False
    if getattr(config.online_store, "enable_openai_compatible_store", False):
        return False  # a value_num column: Feast's loop fills it
    if any(f.dtype.to_value_type().name != "DOUBLE" for f in view.features):
        return False
    if _nothing_to_write(view, frame):
        return True
    names = [f.name for f in view.features]
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    version = config.entity_key_serialization_version
    keys = [serialize_entity_key(key, entity_key_serialization_version=version)
            for key in _key_protos(view, frame)]
    events, created = _row_times(view, frame)
    values: list[tuple[Any, ...]] = []
    for name in names:
        column = frame[name].to_numpy(dtype=object)
        null = frame[name].isna().to_numpy()
        # Feast's text of a double is ``str`` of the proto's (Python) float; a null is an
        # empty ``Value`` with no text
        texts = [None if empty else str(float(v)) for v, empty in zip(column, null, strict=True)]
        blobs = [b"" if empty else ValueProto(double_val=v).SerializeToString()
                 for v, empty in zip(column, null, strict=True)]
        values.extend(zip(keys, [name] * len(frame), blobs, texts, events, created,
                          strict=True))
    table = _table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
    columns = "entity_key, feature_name, value, value_text, event_ts, created_ts"
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns.split(", ")[2:])
    sql = (f"INSERT INTO {_quote_id(table)} ({columns}) VALUES (?, ?, ?, ?, ?, ?) "
           f"ON CONFLICT(entity_key, feature_name) DO UPDATE SET {updates};")
    conn = online._get_conn(config)
    with conn:
        conn.executemany(sql, values)
    return True


def _plain(store: FeatureStore, view: Any) -> bool:
    """Whether ``push`` writes ``view``'s rows as they are (no transformation, no mapping,
    no precomputed vectors to refresh)."""
    from feast import FeatureView

    if type(view) is not FeatureView or view.batch_source is None:
        return False
    if view.batch_source.field_mapping:
        return False
    services = store.list_feature_services()
    return not any(getattr(s, "precompute_online", False) for s in services)


def _online_rows(view: Any, frame: pd.DataFrame) -> list[tuple[Any, dict[str, Any], Any, Any]]:
    """``(entity key, {feature: value}, event time, created time)`` protos of each row of
    ``frame``, as Feast's ``_convert_arrow_fv_to_proto`` builds them for ``push``:
    a null (NaN/None) value is an empty ``Value``; a frame whose feature columns are all
    null is not written (``write_to_online_store`` warns and returns)."""
    if _nothing_to_write(view, frame):
        return []
    names = [f.name for f in view.features]
    columns = _value_protos(frame, {f.name: f.dtype.to_value_type() for f in view.features})
    keys = _key_protos(view, frame)
    features = [dict(zip(names, vals, strict=True))
                for vals in zip(*(columns[n] for n in names), strict=True)]
    events, created = _row_times(view, frame)
    return list(zip(keys, features, events, created, strict=True))


def _nothing_to_write(view: Any, frame: pd.DataFrame) -> bool:
    """No rows, or every feature value null: Feast's ``write_to_online_store`` warns and
    writes nothing for such a frame."""
    names = [f.name for f in view.features]
    return frame.empty or bool(frame[names].isnull().all().all())


def _row_times(view: Any, frame: pd.DataFrame) -> tuple[list[Any], list[Any]]:
    """Each row's event time and created time (``None`` without a created column), as
    ``online_write_batch`` takes them."""
    source = view.batch_source
    events = _datetimes(frame[source.timestamp_field])
    created = (_datetimes(frame[source.created_timestamp_column])
               if source.created_timestamp_column else [None] * len(frame))
    return events, created


def _value_protos(frame: pd.DataFrame, kinds: dict[str, Any]) -> dict[str, list[Any]]:
    """``{column: [Value proto per row]}`` for the columns of ``kinds`` (Feast value types),
    as ``_convert_arrow_fv_to_proto`` builds them: a null is an empty ``Value``."""
    import pandas as pd
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from feast.type_map import python_values_to_proto_values

    columns: dict[str, list[Any]] = {}
    for name, kind in kinds.items():
        scalar = _SCALARS.get(kind.name)
        if scalar is None:  # a type not built here: Feast's own conversion
            columns[name] = python_values_to_proto_values(list(frame[name]), kind)
            continue
        attr, cast = scalar
        values = frame[name].to_numpy(dtype=object)
        null = pd.isna(frame[name]).to_numpy()
        columns[name] = [ValueProto() if empty else ValueProto(**{attr: cast(v)})
                         for v, empty in zip(values, null, strict=True)]
    return columns


def _key_protos(view: Any, frame: pd.DataFrame) -> list[Any]:
    """The ``EntityKey`` proto of each row of ``frame`` (the view's join keys)."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto

    key_names = [c.name for c in view.entity_columns]
    columns = _value_protos(frame, {c.name: c.dtype.to_value_type() for c in view.entity_columns})
    return [EntityKeyProto(join_keys=key_names, entity_values=list(vals))
            for vals in zip(*(columns[k] for k in key_names), strict=True)]


_SCALARS: dict[str, tuple[str, Any]] = {
    "DOUBLE": ("double_val", float),
    "FLOAT": ("float_val", float),
    "STRING": ("string_val", str),
}
"""Feast value types built here: the ``Value`` field and the cast Feast's
``PYTHON_SCALAR_VALUE_TYPE_TO_PROTO_VALUE`` applies (a float64 column holds Python
floats already)."""


def _datetimes(column: pd.Series) -> list[Any]:
    """Naive UTC datetimes, as ``_convert_arrow_fv_to_proto`` gives them (it reads the
    Arrow column with ``to_numpy``, which drops the zone after converting to UTC)."""
    import pandas as pd

    stamps = pd.DatetimeIndex(column)
    if stamps.tz is not None:
        stamps = stamps.tz_convert("UTC").tz_localize(None)
    return list(stamps.to_pydatetime())


def append_parts(root: Path, frame: pd.DataFrame, schema: pa.Schema | None = None) -> list[Path]:
    """Append ``frame`` to the parts directory ``root`` as new parts; returns them.

    Columns are taken in ``schema``'s order and cast to it (``frame`` must hold every
    one of them); without a schema the frame's own types are kept.
    """
    import pyarrow as pa

    if schema is not None:
        missing = [name for name in schema.names if name not in frame.columns]
        if missing:
            raise ValueError(f"{root.name}: rows lack the view's columns {missing}")
        table = pa.Table.from_pandas(frame[schema.names], preserve_index=False)
        table = table.cast(schema)
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    return write_parts(root, table, TIMESTAMP_COLUMN)
