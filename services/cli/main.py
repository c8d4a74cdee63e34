"""The ``driftloop`` command line: one module per command group under ``services/cli``.

The callback here loads the configuration once and hands it to every command through
:class:`services.cli.context.CliContext`. Heavy libraries (feast, torch, river) are
imported inside the commands that need them, so ``driftloop --help`` and the broker
commands answer at once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from services.cli import broker, data, demo, drift, models, predict, report, run, topics, train
from services.cli.bootstrap import bootstrap_command
from services.cli.context import CliContext, show_flags_as_flags
from services.cli.logs import configure_logging
from streams.settings import (
    ConfigurationError,
    config_source_name,
    load_settings,
    settings_errors,
)

app = typer.Typer(
    name="driftloop",
    help=(
        "Continuous learning on Kafka: watch a model's feature stream for drift, "
        "retrain from the last checkpoint, prove candidates in shadow, promote or roll back."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"max_content_width": 120},
)
app.add_typer(broker.app, name="broker")
app.add_typer(topics.app, name="topics")
app.add_typer(demo.app, name="demo")
app.add_typer(models.app, name="models")
app.add_typer(data.data_app, name="data")
app.add_typer(data.snapshot_app, name="snapshot")
app.add_typer(drift.app, name="drift")
app.command("report")(report.report_command)
app.command("predict")(predict.predict_command)
app.command("train")(train.train_command)
app.command("run")(run.run_command)
app.command("bootstrap")(bootstrap_command)
show_flags_as_flags()

console = Console(stderr=True, soft_wrap=True)  # paths and ids stay on one line
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (default: $DRIFTLOOP_CONFIG)."),
]


@app.callback()
def _main(
    ctx: typer.Context,
    config: ConfigOption = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging, tracebacks on errors.")
    ] = False,
) -> None:
    configure_logging(logging.DEBUG if verbose else logging.INFO)
    try:
        settings = load_settings(config)
    except (FileNotFoundError, ConfigurationError) as exc:
        # one line: an unknown key names itself, its file or variable, and a guess
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        console.print(f"[red]error:[/] invalid settings ({config_source_name(config)}):")
        for line in settings_errors(exc):
            console.print(f"  {line}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if not verbose and ctx.invoked_subcommand != "run":
        # a command reports errors as one line each, not as librdkafka's log; the
        # services (``run``) keep the configured level
        quiet = settings.kafka.model_copy(update={"log_level": min(settings.kafka.log_level, 2)})
        settings = settings.model_copy(update={"kafka": quiet})
    ctx.obj = CliContext(settings=settings, verbose=verbose)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
