"""``driftloop broker start|stop|status``: the embedded Kafka-protocol broker.

Its default storage is in memory: everything on it is gone after ``broker stop``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from services.cli.context import cli_context, fail, guarded

if TYPE_CHECKING:
    from streams.broker import EmbeddedBroker

app = typer.Typer(help="Run the embedded broker (local use and tests; in-memory storage "
                       "by default, so nothing is kept across `broker stop`).")
console = Console(stderr=True, soft_wrap=True)


def _embedded_broker(
    ctx: typer.Context, port: int | None, state_dir: Path | None
) -> EmbeddedBroker:
    from streams.broker import EmbeddedBroker

    s = cli_context(ctx).settings
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


@app.command("start")
@guarded
def broker_start(
    ctx: typer.Context, port: PortOption = None, state_dir: StateOption = None
) -> None:
    """Start the embedded broker in the background and wait until it accepts connections."""
    from streams.broker import BrokerError

    broker = _embedded_broker(ctx, port, state_dir)
    try:
        pid = broker.start()
    except BrokerError as exc:
        raise fail(str(exc), 1) from None
    console.print(f"broker running on {broker.address} (pid {pid}, log {broker.log_file})")


@app.command("stop")
@guarded
def broker_stop(
    ctx: typer.Context, port: PortOption = None, state_dir: StateOption = None
) -> None:
    """Stop the embedded broker and wait until its port is free."""
    broker = _embedded_broker(ctx, port, state_dir)
    was_running = broker.stop()
    state = "stopped" if was_running else "was not running"
    console.print(f"broker on {broker.address} {state}")


@app.command("status")
@guarded
def broker_status(
    ctx: typer.Context, port: PortOption = None, state_dir: StateOption = None
) -> None:
    """Say whether the embedded broker runs; exit 1 when it does not."""
    status = _embedded_broker(ctx, port, state_dir).status()
    console.print(f"broker on {status.address}: {status.detail}" + (
        f" (pid {status.pid})" if status.pid else ""))
    if not status.running:
        raise typer.Exit(1)
