"""``driftloop data load|send|columns``: a model's own data from a parquet or CSV file.

``load`` writes history to the offline store (what snapshots and training read);
``send`` sends the rows as live ``feature_event/1`` and ``label_event/1`` events to
Kafka (what the services read); ``columns`` lists what the file must hold. All three
read the model's columns from its FeatureService and its task from
``models.<name>.task``; a file that does not fit stops with one line naming the
column, row and value, before anything is written or sent. Mounted on ``data`` by
:mod:`services.cli.data`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from services.cli.context import cli_context, fail, guarded
from streams.settings import Settings

if TYPE_CHECKING:
    from rich.progress import Progress

    from services.features.feast_repo import ModelLayout
    from services.model.task import Task

console = Console(stderr=True, soft_wrap=True)

COLUMNS_HELP = (
    "The file (.parquet or .csv) holds one row per event: the model's entity key "
    "(the FeatureService tag entity_key), event_timestamp (ISO time; UTC when it has no "
    "offset), every feature of the model's FeatureService (numbers or strings as the "
    "views declare them; empty = missing), the label (a value the model's task allows; "
    "empty = unlabelled), and optionally label_time (when the label was observed; "
    "default: event_timestamp) and event_id (default: a hash of the row). Other columns "
    "are ignored. `driftloop data columns --model M` lists them for a model."
)

ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model (its FeatureService).")]
FileArgument = Annotated[Path, typer.Argument(help="A .parquet or .csv file.", exists=True,
                                              dir_okay=False, readable=True)]
ChunkOption = Annotated[int, typer.Option(min=1, help="Rows read and checked at a time.")]


def _layout(settings: Settings, model: str, *, apply: bool) -> tuple[Any, ModelLayout, Task]:
    from services.features.feast_repo import apply_repo, load_layout, open_store

    store = open_store(settings)
    if apply:
        apply_repo(store)
    return store, load_layout(store, model), settings.model(model).task


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeRemainingColumn(), console=console)


class _Bars:
    """``load_file``'s stages (a ``LoadProgress``) as rich progress bars."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.bar: Any = None

    def start(self, stage: str, total: int) -> None:
        self.bar = self.progress.add_task(stage, total=total)

    def advance(self, rows: int) -> None:
        self.progress.advance(self.bar, rows)


@guarded
def columns_command(ctx: typer.Context, model: ModelOption) -> None:
    """List the columns a file for `data load` / `data send` holds for MODEL."""
    from services.features.load import expected_columns

    settings = cli_context(ctx).settings
    _, layout, task = _layout(settings, model, apply=True)
    for column in expected_columns(layout):
        need = "required" if column.required else "optional"
        typer.echo(f"{column.name}\t{column.kind}\t{need}\t{column.meaning}")
    console.print(f"task: {task.kind}" + (f", classes {list(task.classes)}" if task.classes
                                          else ""), highlight=False)


@guarded
def load_command(
    ctx: typer.Context,
    model: ModelOption,
    file: FileArgument,
    replace: Annotated[bool, typer.Option(
        help="Remove the model's stored history once the file is written (default: append; "
             "loading a file twice stores its rows twice, snapshots stay the same).")] = False,
    chunk_rows: ChunkOption = 100_000,
) -> None:
    """Load history for MODEL from FILE into the offline store (snapshots train on it).

    The whole file is checked first; one bad column, value or label stops the load
    with one line and nothing is written.
    """
    from services.features.load import LoadError, load_file
    from services.model.task import LabelError

    settings = cli_context(ctx).settings
    _, layout, task = _layout(settings, model, apply=True)
    with _progress() as progress:
        try:
            result = load_file(file, layout, task, chunk_rows=chunk_rows, replace=replace,
                               progress=_Bars(progress))
        except (LoadError, LabelError) as exc:
            progress.stop()
            raise fail(f"{file.name}: {exc}; nothing written", 1) from None
    if result.ignored_columns:
        console.print(f"ignored columns: {', '.join(result.ignored_columns)}", highlight=False)
    console.print(f"loaded {result.events} events ({result.labelled} labelled) for {model}: "
                  + ", ".join(f"{v} {n}" for v, n in result.written.items())
                  + (f"; {result.removed_parts} old parts removed" if replace else ""),
                  highlight=False)


@guarded
def send_command(
    ctx: typer.Context,
    model: ModelOption,
    file: FileArgument,
    labels: Annotated[bool, typer.Option(
        help="Also send each labelled row's label_event/1, after its features, once the "
             "stream reaches its label_time.")] = True,
    rate: Annotated[float, typer.Option(
        min=0.0, help="Events per second (0 = as fast as possible).")] = 0.0,
    chunk_rows: ChunkOption = 100_000,
) -> None:
    """Send FILE's rows as live feature_event/1 (and label_event/1) events to Kafka.

    Rows are sent in file order (sort the file by event_timestamp) to the `features`
    and `labels` topics of the configuration, keyed by entity id. The whole file is
    checked first; a bad row stops the command before anything is sent.
    """
    from services.features.load import LoadError, check_file, prepare_chunk, read_chunks
    from services.features.replay import replay
    from services.features.send import row_events
    from services.model.task import LabelError
    from streams.producer import EventProducer

    settings = cli_context(ctx).settings
    _, layout, task = _layout(settings, model, apply=False)

    def pairs() -> Any:
        first = 0
        for chunk in read_chunks(file, layout, chunk_rows):
            yield from row_events(prepare_chunk(chunk, layout, task, first), layout,
                                  labels=labels)
            first += len(chunk)

    with _progress() as progress:
        try:
            checked = check_file(file, layout, task, chunk_rows=chunk_rows,
                                 progress=_Bars(progress))
        except (LoadError, LabelError) as exc:
            progress.stop()
            raise fail(f"{file.name}: {exc}; nothing sent", 1) from None
        bar = progress.add_task("sending", total=checked.events)
        with EventProducer(settings, "data-send") as producer:
            stats = replay(producer, settings, pairs(), rate=rate,
                           on_progress=lambda n: progress.advance(bar, n))
    console.print(f"sent {stats.features} feature and {stats.labels} label events for {model} "
                  f"to {settings.topic('features')}/{settings.topic('labels')} in "
                  f"{stats.seconds:.1f} s", highlight=False)
