"""Loading a user's file: columns and labels checked per chunk, rows written as parts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from services.features.feast_repo import LABEL_TIME_COLUMN, ModelLayout
from services.features.generate import Generator, GeneratorConfig, frame_to_events
from services.features.load import (
    LoadError,
    check_header,
    count_rows,
    drop_parts,
    old_parts,
    prepare_chunk,
    read_chunks,
    write_chunk,
)
from services.features.parts import list_parts
from services.features.send import row_events
from services.model.task import LabelError, Task

END = datetime(2026, 1, 2, tzinfo=UTC)
BINARY = Task()


def _history(rows: int = 50) -> pd.DataFrame:
    return Generator(GeneratorConfig(seed=3)).history(END, rows)


def _in(tmp_path: Path, layout: ModelLayout) -> ModelLayout:
    """``layout`` with its views' parts under ``tmp_path``."""
    views = tuple(replace(v, path=tmp_path / v.name) for v in layout.views)
    return replace(layout, views=views, labels=replace(layout.labels,
                                                       path=tmp_path / layout.labels.name))


def test_a_generated_history_passes_unchanged(layout: ModelLayout) -> None:
    frame = _history()
    out = prepare_chunk(frame, layout, BINARY)
    assert list(out["event_id"]) == list(frame["event_id"])
    assert out["amount"].equals(frame["amount"].astype(np.float64))
    assert out["event_timestamp"].dt.tz is not None
    assert (out[LABEL_TIME_COLUMN] == pd.to_datetime(frame[LABEL_TIME_COLUMN], utc=True)).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["velocity_score"]), "missing column 'velocity_score'"),
        (lambda f: f.drop(columns=["is_fraud"]), "missing column 'is_fraud'"),
        (lambda f: f.assign(amount=f["amount"].astype(object).where(f.index != 4, "12,5")),
         "column 'amount' must hold finite numbers, got '12,5' at row 5"),
        (lambda f: f.assign(amount=f["amount"].where(f.index != 2, np.inf)),
         "column 'amount' must hold finite numbers, got inf at row 3"),
        (lambda f: f.assign(channel=f["channel"].where(f.index != 6, 7)),
         "column 'channel' must hold strings, got 7 (int) at row 7"),
        (lambda f: f.assign(event_timestamp=f["event_timestamp"].astype(str)
                            .where(f.index != 1, "yesterday")),
         "column 'event_timestamp' must hold timestamps, got 'yesterday' at row 2"),
        (lambda f: f.assign(card_id=f["card_id"].where(f.index != 0, None)),
         "column 'card_id': empty value at row 1"),
    ],
)
def test_a_wrong_column_is_one_line_naming_it(layout: ModelLayout, change, message) -> None:
    with pytest.raises(LoadError) as caught:
        prepare_chunk(change(_history(10)), layout, BINARY)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_label_the_task_does_not_allow_names_column_row_and_value(
    layout: ModelLayout,
) -> None:
    frame = _history(10)
    frame.loc[7, "is_fraud"] = 2.0
    with pytest.raises(LabelError, match=r"column 'is_fraud': a binary label is 0 or 1, got "
                                         r"2\.0 at row 108 \(1 such rows"):
        prepare_chunk(frame, layout, BINARY, first_row=100)
    regression = prepare_chunk(frame, layout, Task(kind="regression"))
    assert regression["is_fraud"].iloc[7] == 2.0
    multiclass = Task(kind="multiclass", classes=(0, 1, 2))
    assert prepare_chunk(frame, layout, multiclass)["is_fraud"].iloc[7] == 2.0
    frame.loc[3, "is_fraud"] = 0.5
    with pytest.raises(LabelError, match=r"classes \[0, 1, 2\], got 0\.5 at row 4"):
        prepare_chunk(frame, layout, multiclass)


def test_optional_columns_have_defaults_and_ids_are_stable(layout: ModelLayout) -> None:
    frame = _history(10).drop(columns=["event_id", LABEL_TIME_COLUMN])
    frame.loc[2, "is_fraud"] = np.nan  # an unlabelled event is allowed
    first = prepare_chunk(frame, layout, BINARY)
    again = prepare_chunk(frame.copy(), layout, BINARY)
    assert list(first["event_id"]) == list(again["event_id"])
    assert first["event_id"].nunique() == 10
    assert (first[LABEL_TIME_COLUMN] == first["event_timestamp"]).all()
    other = frame.copy()
    other.loc[0, "amount"] += 1.0
    assert prepare_chunk(other, layout, BINARY)["event_id"][0] != first["event_id"][0]


def test_extra_columns_are_reported_not_refused(layout: ModelLayout) -> None:
    columns = [*_history(1).columns, "note"]
    assert check_header(columns, layout) == ["note"]


def test_csv_chunks_read_strings_as_strings_and_count_rows(
    tmp_path: Path, layout: ModelLayout,
) -> None:
    frame = _history(25)
    frame["card_id"] = [str(i) for i in range(25)]  # digits: must stay strings
    path = tmp_path / "h.csv"
    frame.to_csv(path, index=False)
    assert count_rows(path) == 25
    chunks = list(read_chunks(path, layout, chunk_rows=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    out = prepare_chunk(chunks[0], layout, BINARY)
    assert out["card_id"].tolist()[:3] == ["0", "1", "2"]
    assert str(out["event_timestamp"].dt.tz) == "UTC"


def test_written_chunks_are_parts_of_every_view_and_replace_drops_the_old(
    tmp_path: Path, layout: ModelLayout,
) -> None:
    layout = _in(tmp_path, layout)
    frame = prepare_chunk(_history(40), layout, BINARY)
    frame.loc[0, "is_fraud"] = np.nan
    written = write_chunk(frame, layout)
    assert written == {"fraud_transaction": 40, "fraud_card": 40, "fraud_labels": 39}
    labels = pq.read_table(list_parts(layout.labels.path)).to_pandas()
    assert len(labels) == 39 and frame["event_id"][0] not in set(labels["event_id"])
    old = old_parts(layout)
    write_chunk(frame.iloc[:5], layout)
    drop_parts(old, layout)
    kept = pq.read_table(list_parts(tmp_path / "fraud_transaction")).to_pandas()
    assert len(kept) == 5


def test_rows_become_the_same_events_the_generator_sends(layout: ModelLayout) -> None:
    frame = _history(30)
    expected = list(frame_to_events(frame))
    got = list(row_events(prepare_chunk(frame, layout, BINARY), layout))
    assert got == expected
    unlabelled = list(row_events(prepare_chunk(frame, layout, BINARY), layout, labels=False))
    assert [f for f, _ in unlabelled] == [f for f, _ in expected]
    assert all(label is None for _, label in unlabelled)


class _Recorder:
    """Stands in for the producer: records what the replay sends, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, topic: str, event: object, key: str, **_: object) -> None:
        self.sent.append((topic, event.event_id))  # type: ignore[attr-defined]

    def flush(self) -> None:
        pass


def test_replay_sends_features_of_unlabelled_rows_without_a_label(layout: ModelLayout) -> None:
    from services.features.replay import replay
    from streams.settings import load_settings

    frame = _history(6)
    frame.loc[[1, 4], "is_fraud"] = np.nan
    pairs = list(row_events(prepare_chunk(frame, layout, BINARY), layout))
    recorder = _Recorder()
    settings = load_settings()
    stats = replay(recorder, settings, pairs)  # type: ignore[arg-type]
    assert (stats.features, stats.labels) == (6, 4)
    labels = [event_id for topic, event_id in recorder.sent if topic == settings.topic("labels")]
    unlabelled = {frame["event_id"][1], frame["event_id"][4]}
    assert len(labels) == 4 and not unlabelled & set(labels)
