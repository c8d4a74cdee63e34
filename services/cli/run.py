"""``driftloop run SERVICE...``: the long-running services in this process."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from services.cli.context import cli_context, fail, guarded
from services.cli.services import SERVICE_NAMES, run_services

console = Console(stderr=True, soft_wrap=True)


@guarded
def run_command(
    ctx: typer.Context,
    services: Annotated[
        list[str], typer.Argument(help=f"Services to run: {', '.join(SERVICE_NAMES)}.")
    ],
) -> None:
    """Run one or more services in this process until SIGTERM or Ctrl-C."""
    unknown = [s for s in services if s not in SERVICE_NAMES]
    if unknown:
        raise fail(f"unknown service(s) {', '.join(unknown)}; "
                   f"choose from {', '.join(SERVICE_NAMES)}")
    raise typer.Exit(run_services(cli_context(ctx).settings, services))
