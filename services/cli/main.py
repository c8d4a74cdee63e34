"""The ``driftloop`` command line.

Heavy libraries (feast, torch, river) are imported inside the commands that need
them, so ``driftloop --help`` and the broker commands answer at once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from services.cli.logs import configure_logging
from services.cli.services import SERVICE_NAMES, run_services
from services.drift.cli import app as drift_app
from services.features.cli import data_app, snapshot_app
from services.online.cli import predict_command
from services.registry.cli import models_app
from services.report.cli import report_command
from services.training.cli import train_command
from streams.settings import Settings, load_settings, settings_errors

app = typer.Typer(
    name="driftloop",
    help=(
        "Continuous learning on Kafka: watch a model's feature stream for drift, "
        "retrain from the last checkpoint, prove candidates in shadow, promote or roll back."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
broker_app = typer.Typer(help="Run the embedded Kafka-protocol broker (local use and tests).")
topics_app = typer.Typer(help="Create and list driftloop's topics.")
demo_app = typer.Typer(help="Demonstrations that run against the configured broker.")
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
app.add_typer(demo_app, name="demo")
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(drift_app, name="drift")
app.command("report")(report_command)
app.command("predict")(predict_command)
app.command("train")(train_command)

console = Console(stderr=True, soft_wrap=True)  # paths and ids stay on one line
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (default: $DRIFTLOOP_CONFIG)."),
]
_state: dict[str, Settings] = {}


@app.callback()
def _main(
    config: ConfigOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    configure_logging(logging.DEBUG if verbose else logging.INFO)
    try:
        _state["settings"] = load_settings(config)
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except ValidationError as exc:
        where = config or os.environ.get("DRIFTLOOP_CONFIG") or "DRIFTLOOP_* variables"
        console.print(f"[red]error:[/] invalid settings ({where}):")
        for line in settings_errors(exc):
            console.print(f"  {line}", markup=False, highlight=False)
        raise typer.Exit(2) from None


def settings() -> Settings:
    """The settings loaded by the top-level callback."""
    return _state.get("settings") or load_settings()


# -- broker ----------------------------------------------------------------------------


def _embedded_broker(port: int | None, state_dir: Path | None):  # type: ignore[no-untyped-def]
    from streams.broker import EmbeddedBroker

    s = settings()
    return EmbeddedBroker(
        state_dir or s.state_dir,
        host=s.broker.host,
        port=port or s.broker.port,
        storage_engine=s.broker.storage_engine,
    )


PortOption = Annotated[
    int | None, typer.Option(help="Broker port (default: broker.port, 19092).")
]
StateOption = Annotated[
    Path | None, typer.Option(help="Where the pid and log files live (default: state_dir).")
]


@broker_app.command("start")
def broker_start(port: PortOption = None, state_dir: StateOption = None) -> None:
    """Start the embedded broker in the background and wait until it accepts connections."""
    from streams.broker import BrokerError

    broker = _embedded_broker(port, state_dir)
    try:
        pid = broker.start()
    except BrokerError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    console.print(f"broker running on {broker.address} (pid {pid}, log {broker.log_file})")


@broker_app.command("stop")
def broker_stop(port: PortOption = None, state_dir: StateOption = None) -> None:
    """Stop the embedded broker and wait until its port is free."""
    broker = _embedded_broker(port, state_dir)
    was_running = broker.stop()
    state = "stopped" if was_running else "was not running"
    console.print(f"broker on {broker.address} {state}")


@broker_app.command("status")
def broker_status(port: PortOption = None, state_dir: StateOption = None) -> None:
    """Say whether the embedded broker runs; exit 1 when it does not."""
    status = _embedded_broker(port, state_dir).status()
    console.print(f"broker on {status.address}: {status.detail}" + (
        f" (pid {status.pid})" if status.pid else ""))
    if not status.running:
        raise typer.Exit(1)


# -- topics ----------------------------------------------------------------------------


@topics_app.command("create")
def topics_create(
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Partitions per topic (default: topics.partitions).")
    ] = None,
) -> None:
    """Create every topic; existing ones are left untouched."""
    from streams.admin import create_topics

    result = create_topics(settings(), partitions=partitions)
    table = Table("topic", "state")
    for name, state in result.items():
        table.add_row(name, state)
    Console().print(table)


@topics_app.command("list")
def topics_list() -> None:
    """List the broker's topics and their partition counts."""
    from streams.admin import list_topics

    table = Table("topic", "partitions")
    for name, count in sorted(list_topics(settings()).items()):
        table.add_row(name, str(count))
    Console().print(table)


# -- services --------------------------------------------------------------------------


@app.command("run")
def run(
    services: Annotated[
        list[str], typer.Argument(help=f"Services to run: {', '.join(SERVICE_NAMES)}.")
    ],
) -> None:
    """Run one or more services in this process until SIGTERM or Ctrl-C."""
    unknown = [s for s in services if s not in SERVICE_NAMES]
    if unknown:
        console.print(
            f"[red]error:[/] unknown service(s) {', '.join(unknown)}; "
            f"choose from {', '.join(SERVICE_NAMES)}"
        )
        raise typer.Exit(2)
    raise typer.Exit(run_services(settings(), services))


# -- demo ------------------------------------------------------------------------------


@demo_app.command("roundtrip")
def demo_roundtrip(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for messages.")] = 60.0,
) -> None:
    """Send one event of every type (and one malformed message) and read them back."""
    from services.demo.roundtrip import run_round_trip
    from services.observability.setup import init_telemetry

    init_telemetry("driftloop-demo")
    result = run_round_trip(settings(), timeout_s=timeout)
    table = Table("topic", "schema", "came back equal", "event_id + traceparent")
    for name, event in result.sent.items():
        back = result.received.get(name)
        table.add_row(
            settings().topic(name), event.__struct_config__.tag,
            "yes" if back == event else "NO", "yes" if result.traced.get(name) else "NO",
        )
    out = Console(width=100)
    out.print(table)
    out.print(f"malformed message -> {settings().topic('deadletter')} "
              f"with reason: {result.dead_letter_reason}")
    if not result.ok:
        console.print("[red]round trip FAILED[/]")
        raise typer.Exit(1)
    out.print("[green]round trip OK[/]: every event type came back intact with its headers.")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
