"""``driftloop data ...`` and ``driftloop snapshot ...``: data in, and training snapshots.

``data generate`` writes the fraud example's synthetic data; ``data load``, ``data send``
and ``data columns`` (:mod:`services.cli.data_files`) take any model's own file.

Both open the Feast repository of the configuration (``feast.*``); ``--repo`` and
``--variant`` override it for one call. The ``driftloop`` command line mounts them as the
``data`` and ``snapshot`` groups. Feast is imported inside commands.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from services.cli.context import cli_context, guarded
from services.cli.data_files import COLUMNS_HELP, columns_command, load_command, send_command
from services.features.generate import MODEL, DriftSpec, Generator, GeneratorConfig, now_utc
from streams.settings import FeastSettings, Settings

data_app = typer.Typer(
    help="A model's data: load a file's history into Feast, send its rows to Kafka, or "
         "generate the fraud example's synthetic data."
)
snapshot_app = typer.Typer(help="Point-in-time-correct training snapshots (Feast saved datasets).")
console = Console(stderr=True, soft_wrap=True)  # paths and ids stay on one line


@data_app.callback()
def _data() -> None:
    """History into Feast, live events into Kafka."""


@snapshot_app.callback()
def _snapshot() -> None:
    """Training snapshots."""


VariantOption = Annotated[
    str | None,
    typer.Option(help="Feast store variant, e.g. embedded or real (default: feast.variant)."),
]
RepoOption = Annotated[
    Path | None, typer.Option(help="Feast repository directory (default: feast.repo).")
]


def feast_settings(ctx: typer.Context, variant: str | None, repo: Path | None) -> Settings:
    """The settings with ``--variant``/``--repo`` applied over ``feast``."""
    settings = cli_context(ctx).settings
    update = {k: v for k, v in (("variant", variant), ("repo", repo)) if v is not None}
    if not update:
        return settings
    feast = FeastSettings.model_validate({**settings.feast.model_dump(), **update})
    return settings.model_copy(update={"feast": feast})


def _time(value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _store(settings: Settings) -> Any:
    from services.features.feast_repo import apply_repo, open_store

    store = open_store(settings)
    apply_repo(store)
    return store


data_app.command("load", epilog=COLUMNS_HELP)(load_command)
data_app.command("send", epilog=COLUMNS_HELP)(send_command)
data_app.command("columns")(columns_command)


@data_app.command("generate")
@guarded
def generate(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="Model whose data to generate.")] = MODEL,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
    history_rows: Annotated[int, typer.Option(help="Labelled history rows for Feast.")] = 100_000,
    live_events: Annotated[int, typer.Option(help="Live events to replay into Kafka.")] = 0,
    rate: Annotated[
        float, typer.Option(help="Replay rate, events/s (0 = as fast as possible).")
    ] = 0.0,
    event_rate: Annotated[float, typer.Option(help="Event-time events per second.")] = 100.0,
    history_end: Annotated[
        str | None, typer.Option(help="ISO time history ends, live starts (default now).")
    ] = None,
    label_delay: Annotated[
        float, typer.Option(help="Mean label delay, seconds of event time.")
    ] = 30.0,
    missing_rate: Annotated[float, typer.Option(help="Share of numeric values left null.")] = 0.0,
    covariate_features: Annotated[
        str, typer.Option(help="Comma-separated features to shift.")
    ] = "",
    covariate_at: Annotated[
        float | None, typer.Option(help="Covariate shift start, s after live start.")
    ] = None,
    covariate_ramp: Annotated[
        float, typer.Option(help="Seconds to reach full shift (0 = abrupt).")
    ] = 0.0,
    mean_shift: Annotated[
        float, typer.Option(help="Numeric mean shift, in base standard deviations.")
    ] = 0.0,
    scale: Annotated[float, typer.Option(help="Numeric spread multiplier.")] = 1.0,
    mix: Annotated[
        str | None, typer.Option(help="Categorical mix after shift, e.g. online=0.8,pos=0.2.")
    ] = None,
    concept_at: Annotated[
        float | None, typer.Option(help="Concept shift start, s after live start.")
    ] = None,
    concept_ramp: Annotated[
        float, typer.Option(help="Seconds to reach the full concept shift.")
    ] = 0.0,
    concept_strength: Annotated[
        float, typer.Option(help="0..1, how far the labelling function moves.")
    ] = 1.0,
    append: Annotated[bool, typer.Option(help="Append history instead of replacing it.")] = False,
    live_out: Annotated[
        Path | None,
        typer.Option(help="Write the live events to this parquet file instead of Kafka "
                          "(a window for `driftloop drift check`)."),
    ] = None,
    variant: VariantOption = None,
    repo: RepoOption = None,
) -> None:
    """Write seeded history to the offline store; replay live events to Kafka or a file."""
    if model != MODEL:
        console.print(f"[red]error:[/] the generator knows model {MODEL!r} only, not {model!r}")
        raise typer.Exit(2)
    live_start = _time(history_end, now_utc())
    try:
        drift = DriftSpec.from_options(
            live_start=live_start,
            covariate_features=[f for f in covariate_features.split(",") if f],
            covariate_at=covariate_at,
            covariate_ramp=covariate_ramp,
            mean_shift=mean_shift,
            scale=scale,
            mix=mix,
            concept_at=concept_at,
            concept_ramp=concept_ramp,
            concept_strength=concept_strength,
        )
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    gen = Generator(
        GeneratorConfig(
            seed=seed,
            events_per_second=event_rate,
            label_delay_s=label_delay,
            missing_rate=missing_rate,
            drift=drift,
        )
    )
    if history_rows > 0:
        from services.features.history import write_history

        store = _store(feast_settings(ctx, variant, repo))
        frame = gen.history(live_start, history_rows)
        written = write_history(store, frame, model=model, mode="append" if append else "overwrite")
        console.print(
            f"history: {history_rows} events {frame['event_timestamp'].min()} .. "
            f"{frame['event_timestamp'].max()}, fraud rate {frame['is_fraud'].mean():.3f}, "
            f"rows per view {written}"
        )
    if live_events > 0 and live_out is not None:
        import pandas as pd

        from services.files import write_atomic

        live = pd.concat(list(gen.rows(1, live_start, live_events)), ignore_index=True)
        write_atomic(live_out, live.to_parquet(index=False))
        console.print(f"live: {len(live)} events {live['event_timestamp'].min()} .. "
                      f"{live['event_timestamp'].max()} written to {live_out}")
    elif live_events > 0:
        _replay(cli_context(ctx).settings, gen, live_start, live_events, rate, model)


def _replay(
    settings: Settings, gen: Generator, start: datetime, events: int, rate: float, model: str
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from services.features.replay import replay
    from streams.producer import EventProducer

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("replaying", total=events)
        producer = EventProducer(settings, "datagen")
        stats = replay(
            producer,
            settings,
            gen.live(start, events, model),
            rate=rate,
            on_progress=lambda n: progress.advance(task, n),
        )
    console.print(
        f"live: {stats.features} feature and {stats.labels} label events to "
        f"{settings.topic('features')}/{settings.topic('labels')} in {stats.seconds:.1f} s"
    )


@data_app.command("compact")
@guarded
def compact(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="Model whose offline views to compact.")] = MODEL,
    before: Annotated[
        str | None,
        typer.Option(help="Compact dates before this UTC date (default: today, i.e. every "
                          "closed date)."),
    ] = None,
    min_parts: Annotated[int, typer.Option(help="Leave dates with fewer parts alone.")] = 2,
    variant: VariantOption = None,
    repo: RepoOption = None,
) -> None:
    """Merge the small parquet parts of closed dates into one part per date.

    Safe while the ingest runs: readers see the old parts or the merged one, never both.
    """
    from services.features.compact import CompactionBusy, compact_view
    from services.features.feast_repo import load_layout

    cutoff = datetime.fromisoformat(before).date() if before else datetime.now(UTC).date()
    store = _store(feast_settings(ctx, variant, repo))
    try:
        layout = load_layout(store, model)
    except Exception as exc:  # unknown model: one line, not a traceback
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    for view in (*layout.views, layout.labels):
        try:
            done = compact_view(view.path, before=cutoff, min_parts=min_parts)
        except (CompactionBusy, OSError) as exc:
            console.print(f"[red]error:[/] {view.name}: {exc}")
            raise typer.Exit(1) from None
        console.print(
            f"{view.name}: {len(done.dates)} dates compacted, {done.parts_before} -> "
            f"{done.parts_after} parts ({done.rows} rows merged)"
        )


@snapshot_app.command("create")
@guarded
def create(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="Model (its FeatureService).")],
    start: Annotated[str, typer.Option(help="Window start, ISO time (inclusive, feature time).")],
    end: Annotated[str, typer.Option(help="Window end, ISO time (exclusive).")],
    profile: Annotated[bool, typer.Option(help="Also build and cache the drift profile.")] = True,
    variant: VariantOption = None,
    repo: RepoOption = None,
) -> None:
    """Build a snapshot of labelled events in [start, end) and print its id."""
    from services.features.feast_repo import load_model_spec, open_store
    from services.features.snapshot import create_snapshot

    store = open_store(feast_settings(ctx, variant, repo))
    spec = load_model_spec(store, model)
    now = now_utc()
    try:
        snap = create_snapshot(  # the profile cache the drift monitor and check read
            store, spec, _time(start, now), _time(end, now), with_profile=profile,
            cache_root=cli_context(ctx).settings.state_dir / "profiles",
            task=cli_context(ctx).settings.model(model).task,
        )
    except ValueError as exc:  # a label of another task too (LabelError)
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    state = "created" if snap.created else "already there"
    console.print(
        f"{snap.snapshot_id}: {snap.rows} rows ({snap.dropped} dropped), {state}, {snap.path}"
    )
    typer.echo(snap.snapshot_id)
