"""``driftloop report``: write one model's self-contained HTML report.

An unknown model is an error (the report would be empty), not an empty report. The
``driftloop`` command line mounts it as ``report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from services.cli.context import cli_context, guarded
from services.cli.models import known_model
from services.files import write_atomic

console = Console(stderr=True, soft_wrap=True)  # paths and ids stay on one line


@guarded
def report_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model to report on.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
    since: Annotated[
        str | None,
        typer.Option(help="Only events at or after this time: ISO 8601 (UTC if no zone) "
                          "or a duration back from now (30m, 6h, 7d)."),
    ] = None,
    registry: Annotated[
        str | None, typer.Option(help="Registry root (default: settings registry_uri).")
    ] = None,
    idle: Annotated[
        float, typer.Option(help="Stop reading the topics after this many seconds without "
                                 "a new message.", min=0.1)
    ] = 2.0,
) -> None:
    """Write an HTML report: distributions, drift over windows, retrains, shadow, lineage."""
    from services.registry.store import InvalidNameError, ModelRegistry, validate_name
    from services.report.collect import collect, parse_since
    from services.report.render import render_report

    try:
        validate_name(model, "model name")
        since_at = parse_since(since) if since else None
    except (InvalidNameError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    s = cli_context(ctx).settings
    reg = ModelRegistry(registry or s.registry_uri)
    known_model(reg, model)
    data = collect(s, model, since=since_at, registry=reg, idle_s=idle)
    write_atomic(out, render_report(data))
    console.print(
        f"wrote {out} ({len(data.drift_reports)} windows, {len(data.retrain_requests)} retrain "
        f"requests, {len(data.verdicts)} verdicts, {len(data.versions)} versions)"
    )
