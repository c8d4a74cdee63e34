"""``driftloop bootstrap --model M``: turn an empty deployment into one that watches drift.

A fresh deployment has topics to create, a Feast repository to apply, no history, no
snapshot and no champion, and without a champion the drift monitor skips every event.
This command does those steps once, in order, one progress line each:

1. create the topics (existing ones are left alone);
2. apply the Feast repository (registers the definitions, creates the parts folders);
3. if the model already has a champion: report it and stop (a re-run does nothing else);
4. load history, unless the offline store already holds labelled rows for the model
   (so a re-run after a failed step never loads it twice): from ``--history FILE``
   (parquet or CSV, a local path or an fsspec URL) or ``--generate N`` example rows;
5. take a snapshot of every labelled row (its id is a content hash: the same data,
   the same snapshot);
6. train version 1 from it and make it champion (``driftloop train``; its run is keyed
   by the snapshot, so a killed run resumes from its checkpoint).

``--wait`` instead waits until the model has a champion: what the services of a
Kubernetes deployment do in an initContainer before they start.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from services.cli.context import UserError, cli_context, guarded
from streams.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

console = Console(stderr=True, soft_wrap=True)  # paths and ids stay on one line


def say(model: str, step: str, message: str) -> None:
    """One progress line: ``bootstrap <model>: <step>: <message>``."""
    console.print(f"bootstrap {model}: {step}: {message}", markup=False, highlight=False)


# ---------------------------------------------------------------- steps

def ensure_topics(settings: Settings) -> str:
    """Create every topic; the progress message counts created and existing ones."""
    from streams.admin import create_topics

    states = create_topics(settings)
    created = sum(state == "created" for state in states.values())
    return (f"{len(states)} ready ({created} created, {len(states) - created} already there, "
            f"{settings.topics.partitions} partitions)")


def ensure_feast(settings: Settings) -> tuple[FeatureStore, str]:
    """Apply the Feast repository (idempotent) and return the open store."""
    from services.features.feast_repo import apply_repo, open_store

    store = open_store(settings)
    applied = apply_repo(store)
    return store, (f"{len(applied)} objects applied from {settings.feast.repo} "
                   f"(variant {settings.feast.variant})")


def history_rows(store: FeatureStore, model: str) -> int:
    """Labelled rows the offline store holds for ``model`` (parquet metadata only)."""
    import pyarrow.parquet as pq

    from services.features.feast_repo import load_layout
    from services.features.parts import list_parts

    labels = load_layout(store, model).labels
    return sum(pq.ParquetFile(part).metadata.num_rows for part in list_parts(labels.path))


@contextlib.contextmanager
def local_copy(source: str) -> Iterator[Path]:
    """``source`` as a local path: a URL (``s3://``...) is fetched to a temporary file."""
    if "://" not in source or source.startswith("file://"):
        yield Path(source.removeprefix("file://"))
        return
    import fsspec

    with tempfile.TemporaryDirectory(prefix="driftloop-history-") as tmp:
        path = Path(tmp) / Path(source.split("?")[0]).name
        try:
            fsspec.filesystem(source.split("://")[0]).get(source, str(path))
        except (OSError, ValueError) as exc:
            raise UserError(f"history {source}: cannot fetch it ({exc})") from None
        yield path


def load_history_file(store: FeatureStore, settings: Settings, model: str, source: str) -> int:
    """Check a history file (path or URL) against the model's views and task, then write
    it with ``driftloop data load``'s loader; returns the events loaded."""
    from services.features.feast_repo import load_layout
    from services.features.load import LoadError, load_file
    from services.model.task import LabelError

    layout = load_layout(store, model)
    with local_copy(source) as path:
        if not path.is_file():
            raise UserError(f"history {source}: no such file")
        try:
            result = load_file(path, layout, settings.model(model).task)
        except LoadError as exc:
            raise UserError(f"history {source}: {exc}") from None
        except LabelError as exc:
            raise UserError(f"history {source}: {exc} (invalid_value)") from None
    return result.events


def generate_history(store: FeatureStore, model: str, rows: int, seed: int) -> int:
    """Write ``rows`` events of the example generator (the fraud model only)."""
    from services.features.generate import MODEL, Generator, GeneratorConfig, now_utc
    from services.features.history import write_history

    if model != MODEL:
        raise UserError(f"--generate knows model {MODEL!r} only, not {model!r}; "
                        "load its history with --history FILE")
    frame = Generator(GeneratorConfig(seed=seed)).history(now_utc(), rows)
    write_history(store, frame, model=model, mode="append")
    return len(frame)


@dataclass(frozen=True)
class HistorySource:
    """Where history comes from when the offline store has none: a file or the generator."""

    path: str | None = None
    generate: int | None = None
    seed: int = 0

    def describe(self) -> str:
        return self.path or f"the example generator ({self.generate} rows, seed {self.seed})"


def ensure_history(
    store: FeatureStore, settings: Settings, model: str, source: HistorySource
) -> str:
    """Load history once: skipped when labelled rows are already there."""
    present = history_rows(store, model)
    if present:
        return f"{present} labelled rows already in the offline store; nothing loaded"
    if source.path is not None:
        rows = load_history_file(store, settings, model, source.path)
    elif source.generate:
        rows = generate_history(store, model, source.generate, source.seed)
    else:
        raise UserError(f"the offline store has no history for {model}: "
                        "give --history FILE or --generate N")
    return f"{rows} labelled events loaded from {source.describe()}"


def take_snapshot(store: FeatureStore, settings: Settings, model: str) -> tuple[str, str]:
    """Snapshot every labelled row within the configured event-time range."""
    from services.features.feast_repo import load_model_spec
    from services.features.snapshot import create_snapshot

    limits = settings.validation
    snap = create_snapshot(store, load_model_spec(store, model), limits.event_time_min,
                           limits.event_time_max, cache_root=settings.state_dir / "profiles",
                           task=settings.model(model).task)
    state = "created" if snap.created else "already there"
    return snap.snapshot_id, f"{snap.snapshot_id}: {snap.rows} rows ({state})"


# ---------------------------------------------------------------- waiting

def wait_for(
    probe: Callable[[], int | None],
    timeout_s: float,
    *,
    interval_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int | None:
    """Call ``probe`` until it answers (not None) or ``timeout_s`` has passed."""
    deadline = clock() + timeout_s
    while True:
        answer = probe()
        if answer is not None or clock() >= deadline:
            return answer
        sleep(max(0.0, min(interval_s, deadline - clock())))


def _champion_probe(registry: Any, model: str) -> Callable[[], int | None]:
    def probe() -> int | None:
        try:
            return registry.get_alias(model, "champion")
        except OSError as exc:  # the store not reachable yet: keep waiting, say why
            say(model, "wait", f"registry not readable yet ({exc})")
            return None

    return probe


# ---------------------------------------------------------------- the command

@guarded
def bootstrap_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model (its FeatureService).")],
    history: Annotated[
        str | None,
        typer.Option(help="History to load when the offline store has none: a parquet or "
                          "CSV file (path or fsspec URL) with the model's columns."),
    ] = None,
    generate: Annotated[
        int | None,
        typer.Option(min=1, help="Or: this many rows of the example generator (fraud)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of --generate.")] = 0,
    max_steps: Annotated[
        int | None, typer.Option(help="Override max_steps of the first training.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Only wait until the model has a champion.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0, help="--wait: give up after this many seconds (exit 1).")
    ] = 900.0,
) -> None:
    """Create topics, apply Feast, load history, snapshot and train v1 if there is no
    champion; a re-run with a champion changes nothing. --wait: wait for the champion."""
    from services.registry.store import ModelRegistry

    settings = cli_context(ctx).settings
    registry = ModelRegistry(settings.registry_uri)
    if wait:
        say(model, "wait", f"for a champion in {settings.registry_uri} (up to {timeout:.0f}s)")
        version = wait_for(_champion_probe(registry, model), timeout)
        if version is None:
            raise UserError(f"{model} has no champion after {timeout:.0f}s; is the bootstrap "
                            f"job done? (`driftloop bootstrap --model {model}`)", code=1)
        say(model, "wait", f"champion v{version}")
        return
    if history is not None and generate is not None:
        raise UserError("give --history FILE or --generate N, not both")
    started = time.monotonic()
    say(model, "topics", ensure_topics(settings))
    store, applied = ensure_feast(settings)
    say(model, "feast", applied)
    champion = registry.get_alias(model, "champion")
    if champion is not None:
        say(model, "champion", f"v{champion} already; nothing else to do")
        return
    say(model, "champion", "none yet")
    say(model, "history",
        ensure_history(store, settings, model, HistorySource(history, generate, seed)))
    snapshot_id, described = take_snapshot(store, settings, model)
    say(model, "snapshot", described)
    say(model, "train", f"version 1 from {snapshot_id}")
    from services.cli.train import train_command

    train_command(ctx, model=model, snapshot=snapshot_id, max_steps=max_steps)
    say(model, "done", f"champion v{registry.get_alias(model, 'champion')} "
                       f"in {time.monotonic() - started:.0f}s")
