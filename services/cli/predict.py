"""``driftloop predict --model M --features JSON``: the online model and the champion answer.

Loads both per call (the newest verified local snapshot of the online learner, and the
registry's ``champion`` with its sha256 check) and prints one JSON object. Mounted as
``predict`` by the ``driftloop`` command line. Exit status 0 when at least one model
answered, 1 when neither could.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from services.cli.context import cli_context, guarded

console = Console(stderr=True, soft_wrap=True)  # paths and ids stay on one line


def parse_features(text: str) -> dict[str, Any]:
    """A JSON object of feature values (``@path`` reads it from a file)."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--features is not valid JSON ({exc}); e.g. "
                         """'{"amount": 12.5, "country": "FR"}'""") from None
    if not isinstance(value, dict):
        raise ValueError("features must be a JSON object of name: value")
    bad = [k for k, v in value.items() if v is not None and not isinstance(v, int | float | str)]
    if bad:
        raise ValueError(f"feature values must be numbers, strings or null: {', '.join(bad)}")
    return value


@guarded
def predict_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name.")],
    features: Annotated[
        str, typer.Option("--features", "-f", help="JSON object of features, or @file.json.")
    ],
    registry: Annotated[
        str | None, typer.Option(help="Registry root (default: settings registry_uri).")
    ] = None,
) -> None:
    """Score one event with the online learner's latest snapshot and the champion."""
    from services.online.predict import answered, predict

    try:
        feats = parse_features(features)
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    s = cli_context(ctx).settings
    if registry is not None:
        s = s.model_copy(update={"registry_uri": registry})
    answer = predict(s, model, feats)
    typer.echo(json.dumps(answer, sort_keys=True))
    if not answered(answer["online"]) and not answered(answer["champion"]):
        raise typer.Exit(1)
