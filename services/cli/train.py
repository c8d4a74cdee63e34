"""``driftloop train --model M --snapshot S``: train version 1 from a snapshot.

The first version of a model is trained from scratch on a Feast snapshot, registered,
and made ``champion`` (compare-and-set from "no champion"). Later versions come from
retrain requests (fine-tuning), not from this command. The ``driftloop`` command line
mounts it as ``train``.

Re-running the same command is harmless: the run is keyed by ``initial:<model>:<snapshot>``,
so a killed run resumes from its checkpoint and a finished one returns its version.

The model's task and factory come from its settings (``models.<m>.task``/``.factory``).
A snapshot label that does not fit the task, or a factory that cannot build a working
module, ends the command with one line naming the label column and value (or the
factory) and exit status 2; nothing is registered. On success the task's validation
metrics are printed (binary: log loss, AUC, accuracy; multiclass: cross-entropy,
accuracy, macro F1; regression: MSE in label units, MAE).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from services.cli.context import UserError, cli_context, guarded

console = Console(stderr=True, soft_wrap=True)  # paths and ids stay on one line


@guarded
def train_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model (its FeatureService).")],
    snapshot: Annotated[str, typer.Option("--snapshot", "-s", help="Training snapshot id.")],
    registry: Annotated[
        str | None, typer.Option(help="Registry root (default: settings registry_uri).")
    ] = None,
    runs_dir: Annotated[
        Path | None, typer.Option(help="Checkpoint root (default: <state_dir>/runs).")
    ] = None,
    training_config: Annotated[
        Path | None, typer.Option(help="Training YAML (default: the built-in defaults).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Override max_steps.")] = None,
) -> None:
    """Train a model's first version from a snapshot and make it champion."""
    from services.features.feast_repo import load_model_spec, open_store
    from services.features.snapshot import load_snapshot_frame
    from services.model.builder import FactoryError
    from services.model.task import LabelError
    from services.registry.store import AliasConflictError, ModelRegistry
    from services.training.config import load_config
    from services.training.objective import VALIDATION_METRICS
    from services.training.progress import auto_progress
    from services.training.runner import TrainingJob, run_job

    s = cli_context(ctx).settings
    model_settings = s.model(model)
    reg = ModelRegistry(registry or s.registry_uri)
    if reg.get_alias(model, "champion") is not None:
        console.print(
            f"[red]error:[/] {model} already has a champion; retrain requests fine-tune it"
        )
        raise typer.Exit(2)
    # models.<model>.training merged over the defaults, or the file given instead
    config = load_config(training_config) if training_config else model_settings.training
    if max_steps is not None:
        config = config.with_overrides({"max_steps": max_steps})

    store = open_store(s)
    spec = load_model_spec(store, model)
    frame = load_snapshot_frame(store, snapshot)
    times = frame[config.data.time_column]
    job = TrainingJob(
        model=model,
        request_id=f"initial:{model}:{snapshot}",
        reason="manual",
        training_snapshot_id=snapshot,
        fresh=frame,
        window_start=times.min().to_pydatetime(warn=False) if len(frame) else None,
        window_end=times.max().to_pydatetime(warn=False) if len(frame) else None,
    )

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        outcome = run_job(
            job, spec, reg, runs_dir or Path(s.state_dir) / "runs", config, stop_event=stop,
            progress=auto_progress(s.observability.progress),
            task=model_settings.task, factory=model_settings.factory,
        )
    except LabelError as exc:
        raise UserError(f"{model}: snapshot {snapshot}: {exc}; nothing was registered") from None
    except FactoryError as exc:
        raise UserError(f"{model}: {exc}; nothing was registered") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if outcome.status == "interrupted":
        console.print("[yellow]interrupted[/]: checkpoint written; run the command again to resume")
        raise typer.Exit(3)
    assert outcome.version is not None
    version = outcome.version.version
    try:
        reg.set_alias(model, "champion", version, expected=None)
    except AliasConflictError as exc:
        if exc.actual != version:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
    metrics = outcome.version.manifest.metrics
    task = outcome.version.manifest.task.get("kind", "binary")
    shown = ", ".join(f"{name} {metrics.get(name, float('nan')):.4f}"
                      for name in VALIDATION_METRICS[task])
    console.print(f"{model} v{version} is champion ({task}, {outcome.status}); {shown}")
