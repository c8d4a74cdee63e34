"""``driftloop report``: write one model's self-contained HTML report.

The ``driftloop`` command line (``services.cli``) mounts it as ``report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from services.files import write_atomic

console = Console(stderr=True, soft_wrap=True)  # paths and ids stay on one line


def _settings():  # type: ignore[no-untyped-def]
    try:
        from services.cli.main import settings as cli_settings

        return cli_settings()
    except ImportError:  # pragma: no cover - used without the main app
        from streams.settings import load_settings

        return load_settings()


def report_command(
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
    s = _settings()
    data = collect(s, model, since=since_at, registry=ModelRegistry(registry or s.registry_uri),
                   idle_s=idle)
    write_atomic(out, render_report(data))
    console.print(
        f"wrote {out} ({len(data.drift_reports)} windows, {len(data.retrain_requests)} retrain "
        f"requests, {len(data.verdicts)} verdicts, {len(data.versions)} versions)"
    )
