"""Load a user's own history (parquet or CSV) into the offline store, checked first.

The file holds one row per event: the model's entity key, ``event_timestamp``, every
feature of its FeatureService, the label, and optionally ``label_time`` (when the
label was observed; default: the event time) and the event key (``event_id``;
default: a hash of the row). :func:`expected_columns` lists them for a model.

Reading is chunked (:func:`read_chunks`) so a large file never sits in memory whole,
and the caller checks every chunk (:func:`prepare_chunk`) before it writes any
(:func:`write_chunk`): a wrong column or a label that does not fit the model's task
stops the load with one line naming the column and value, and nothing is written.
Rows go through the same append-only parts path as the ingest's flushes
(:mod:`services.features.parts`), ``created`` set to the row's own event time
(features) or label time (labels), as :mod:`services.features.history` does.

Re-loading a file appends its rows again. Snapshots do not change (they keep one row
per event id, and a repeated row has the same id, times and values), but the stored
rows double; :func:`old_parts` and :func:`drop_parts` let a caller replace the
model's history instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from services.features.feast_repo import LABEL_TIME_COLUMN, TIMESTAMP_COLUMN, ModelLayout
from services.features.history import view_frame
from services.features.parts import ensure_parts, list_parts, write_parts
from services.model.task import LabelError, Task

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = (".parquet", ".csv")
DEFAULT_CHUNK_ROWS = 100_000


class LoadError(ValueError):
    """The file does not fit the model (the message names the column, row and value)."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column a history file holds for a model."""

    name: str
    kind: str  # "string", "timestamp", "number", "label"
    required: bool
    meaning: str


def expected_columns(layout: ModelLayout) -> list[Column]:
    """The columns of a history file for ``layout``'s model, in a readable order."""
    spec = layout.spec
    columns = [
        Column(spec.entity, "string", True, "entity key (the events' entity_id)"),
        Column(TIMESTAMP_COLUMN, "timestamp", True, "event time (UTC if no offset)"),
    ]
    for feature in spec.features:
        kind = "number" if feature.kind == "numeric" else "string"
        columns.append(Column(feature.name, kind, True, f"{feature.kind} feature (null allowed)"))
    columns += [
        Column(spec.label, "label", True, "label (null: an unlabelled event)"),
        Column(LABEL_TIME_COLUMN, "timestamp", False, "when the label was observed "
               "(default: the event time)"),
        Column(layout.event_key, "string", False, "event id (default: a hash of the row)"),
    ]
    return columns


def file_format(path: Path) -> str:
    """``parquet`` or ``csv`` from the file name; ``LoadError`` for anything else."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise LoadError(f"{path.name}: expected a .parquet or .csv file")
    return suffix[1:]


def file_columns(path: Path) -> list[str]:
    """The column names of a history file, read without its rows."""
    if file_format(path) == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    return list(pd.read_csv(path, nrows=0).columns)


def count_rows(path: Path) -> int:
    """Rows in the file (parquet: from its footer; CSV: lines after the header)."""
    if file_format(path) == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    lines, last = 0, b"\n"
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return max(lines + (last != b"\n") - 1, 0)


def check_header(columns: list[str], layout: ModelLayout) -> list[str]:
    """``LoadError`` naming the first missing column; returns the columns left out."""
    present = set(columns)
    expected = expected_columns(layout)
    for column in expected:
        if column.required and column.name not in present:
            raise LoadError(f"missing column {column.name!r} ({column.meaning}); "
                            f"the model {layout.spec.model!r} needs: "
                            + ", ".join(c.name for c in expected if c.required))
    known = {c.name for c in expected}
    return [c for c in columns if c not in known]


def read_chunks(path: Path, layout: ModelLayout,
                chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The file's rows, ``chunk_rows`` at a time (CSV string columns read as strings)."""
    if file_format(path) == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
        return
    strings = [layout.spec.entity, layout.event_key,
               *(f.name for f in layout.spec.categorical)]
    yield from pd.read_csv(path, chunksize=chunk_rows, dtype=dict.fromkeys(strings, str),
                           keep_default_na=True)


def _where(first_row: int, position: int) -> str:
    return f"row {first_row + position + 1}"


def _show(value: object) -> str:
    """``repr`` of a cell, numpy scalars as plain Python values (``inf``, not ``np.float64``)."""
    item = getattr(value, "item", None)
    return repr(item() if callable(item) else value)


def _strings(col: pd.Series, name: str, first_row: int, *, nullable: bool) -> pd.Series:
    if pd.api.types.is_integer_dtype(col.dtype):
        return col.astype("int64").astype(str).astype(object)
    values = col.to_numpy(dtype=object)
    notna = pd.notna(values)
    if not nullable and not notna.all():
        where = _where(first_row, int(np.argmin(notna)))
        raise LoadError(f"column {name!r}: empty value at {where}")
    bad = notna & ~np.fromiter((isinstance(v, str) for v in values), bool, len(values))
    if bad.any():
        i = int(np.argmax(bad))
        raise LoadError(f"column {name!r} must hold strings, got {_show(values[i])} "
                        f"({type(values[i]).__name__}) at {_where(first_row, i)}")
    return pd.Series(np.where(notna, values, None), index=col.index, dtype=object)


def _numbers(col: pd.Series, name: str, first_row: int) -> pd.Series:
    if pd.api.types.is_bool_dtype(col.dtype):
        return col.astype(np.float64)
    values = pd.to_numeric(col, errors="coerce") if col.dtype == object else col
    if not pd.api.types.is_numeric_dtype(values.dtype):
        raise LoadError(f"column {name!r} must be numeric, got {col.dtype}")
    out = values.astype(np.float64)
    bad = (out.isna() & col.notna()).to_numpy() | np.isinf(out.to_numpy())
    if bad.any():
        i = int(np.argmax(bad))
        raise LoadError(f"column {name!r} must hold finite numbers, got "
                        f"{_show(col.iloc[i])} at {_where(first_row, i)}")
    return out


def _times(col: pd.Series, name: str, first_row: int, *, nullable: bool) -> pd.Series:
    try:
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            out = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
        else:
            out = pd.to_datetime(col, utc=True, errors="coerce", format="ISO8601")
    except (ValueError, TypeError, OverflowError) as exc:
        raise LoadError(f"column {name!r} must hold timestamps ({exc})") from None
    bad = (out.isna() & col.notna()).to_numpy()
    if not nullable:
        bad |= col.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise LoadError(f"column {name!r} must hold timestamps, got {_show(col.iloc[i])} "
                        f"at {_where(first_row, i)}")
    return out.dt.as_unit("us")


def _labels(col: pd.Series, name: str, task: Task, first_row: int) -> pd.Series:
    out = _numbers(col, name, first_row)
    present = out.notna().to_numpy()
    bad = present & ~task.valid_mask(out.fillna(0.0).to_numpy())
    if bad.any():
        i = int(np.argmax(bad))
        problem = task.label_problem(float(out.iloc[i])) or "does not fit the task"
        raise LabelError(f"column {name!r}: {problem} at {_where(first_row, i)} "
                         f"({int(bad.sum())} such rows in this chunk; task {task.kind})")
    return out


def _event_ids(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A deterministic id per row: 16 hex digits of a hash of its values."""
    hashes = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    return pd.Series([f"{h:016x}" for h in hashes], index=frame.index, dtype=object)


def prepare_chunk(chunk: pd.DataFrame, layout: ModelLayout, task: Task,
                  first_row: int = 0) -> pd.DataFrame:
    """One chunk checked and typed: the frame :func:`write_chunk` takes.

    Raises :class:`LoadError` (a column missing, of the wrong type, a bad value) or
    :class:`~services.model.task.LabelError` (a label the task does not allow),
    each naming the column, the row (1-based, counted over the file) and the value.
    """
    check_header(list(chunk.columns), layout)
    spec = layout.spec
    out = pd.DataFrame(index=chunk.index)
    out[spec.entity] = _strings(chunk[spec.entity], spec.entity, first_row, nullable=False)
    out[TIMESTAMP_COLUMN] = _times(chunk[TIMESTAMP_COLUMN], TIMESTAMP_COLUMN, first_row,
                                   nullable=False)
    for feature in spec.features:
        col = chunk[feature.name]
        out[feature.name] = (_numbers(col, feature.name, first_row) if feature.kind == "numeric"
                             else _strings(col, feature.name, first_row, nullable=True))
    out[spec.label] = _labels(chunk[spec.label], spec.label, task, first_row)
    if LABEL_TIME_COLUMN in chunk.columns:
        label_time = _times(chunk[LABEL_TIME_COLUMN], LABEL_TIME_COLUMN, first_row,
                            nullable=True)
        out[LABEL_TIME_COLUMN] = label_time.fillna(out[TIMESTAMP_COLUMN])
    else:
        out[LABEL_TIME_COLUMN] = out[TIMESTAMP_COLUMN]
    if layout.event_key in chunk.columns:
        out[layout.event_key] = _strings(chunk[layout.event_key], layout.event_key, first_row,
                                         nullable=False)
    else:
        out[layout.event_key] = _event_ids(out, [spec.entity, TIMESTAMP_COLUMN, *spec.names,
                                                 spec.label])
    return out.reset_index(drop=True)


def _table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def write_chunk(frame: pd.DataFrame, layout: ModelLayout) -> dict[str, int]:
    """Append a prepared chunk to every view of the model; rows written per view.

    Feature views get every row; the label view the labelled ones, ``created`` set to
    the label time, as a pushed label gets it.
    """
    from services.features.feast_repo import arrow_schema

    written: dict[str, int] = {}
    for view in layout.views:
        table = _table(view_frame(frame, view, TIMESTAMP_COLUMN), arrow_schema(view))
        write_parts(view.path, table, TIMESTAMP_COLUMN)
        written[view.name] = table.num_rows
    labelled = frame[frame[layout.spec.label].notna()]
    labels = layout.labels
    table = _table(view_frame(labelled, labels, LABEL_TIME_COLUMN), arrow_schema(labels))
    write_parts(labels.path, table, TIMESTAMP_COLUMN)
    written[labels.name] = table.num_rows
    return written


def old_parts(layout: ModelLayout) -> list[Path]:
    """Every part the model's views hold now (what a replacing load removes after it)."""
    return [p for view in (*layout.views, layout.labels) for p in list_parts(view.path)]


def drop_parts(parts: list[Path], layout: ModelLayout) -> None:
    """Remove ``parts`` (and date directories left empty); views keep a schema part."""
    from services.features.feast_repo import arrow_schema

    for part in parts:
        part.unlink(missing_ok=True)
        if part.parent.is_dir() and not any(part.parent.iterdir()):
            part.parent.rmdir()
    for view in (*layout.views, layout.labels):
        ensure_parts(view.path, arrow_schema(view))


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one load did: events and labelled rows read, rows written per view."""

    events: int
    labelled: int
    written: dict[str, int]
    ignored_columns: list[str]
    removed_parts: int = 0


class LoadProgress(Protocol):
    """Progress hooks of :func:`load_file` (the CLI draws bars with them)."""

    def start(self, stage: str, total: int) -> None:
        """A stage (``checking``, ``writing``) of ``total`` rows begins."""

    def advance(self, rows: int) -> None:
        """``rows`` more rows of the current stage are done."""


class _Quiet:
    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass


def load_file(path: Path, layout: ModelLayout, task: Task, *,
              chunk_rows: int = DEFAULT_CHUNK_ROWS, replace: bool = False,
              progress: LoadProgress | None = None) -> LoadResult:
    """Check the whole file, then append it to the model's views (replace: drop the old).

    Raises :class:`LoadError` or :class:`LabelError` before anything is written when a
    column, value or label does not fit; this is the one loader behind ``data load``
    and ``bootstrap --history``.
    """
    hooks: LoadProgress = progress or _Quiet()
    checked = check_file(path, layout, task, chunk_rows=chunk_rows, progress=hooks)
    old = old_parts(layout) if replace else []
    hooks.start("writing", checked.events)
    written: dict[str, int] = {}
    first = 0
    for chunk in read_chunks(path, layout, chunk_rows):
        for view, rows in write_chunk(prepare_chunk(chunk, layout, task, first), layout).items():
            written[view] = written.get(view, 0) + rows
        first += len(chunk)
        hooks.advance(len(chunk))
    if replace:
        drop_parts(old, layout)
    return LoadResult(first, checked.labelled, written, checked.ignored_columns, len(old))


def check_file(path: Path, layout: ModelLayout, task: Task, *,
               chunk_rows: int = DEFAULT_CHUNK_ROWS,
               progress: LoadProgress | None = None) -> LoadResult:
    """Read and check every chunk (nothing kept, nothing written): what a load would read.

    Raises :class:`LoadError` / :class:`LabelError` at the first column, value or label
    that does not fit.
    """
    hooks: LoadProgress = progress or _Quiet()
    ignored = check_header(file_columns(path), layout)
    hooks.start("checking", count_rows(path))
    labelled = first = 0
    for chunk in read_chunks(path, layout, chunk_rows):
        labelled += int(prepare_chunk(chunk, layout, task, first)[layout.spec.label]
                        .notna().sum())
        first += len(chunk)
        hooks.advance(len(chunk))
    return LoadResult(first, labelled, {}, ignored)
