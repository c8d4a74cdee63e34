"""``driftloop topics create|list``: driftloop's topics on the configured broker."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.cli.context import cli_context, guarded

app = typer.Typer(help="Create and list driftloop's topics.")


@app.command("create")
@guarded
def topics_create(
    ctx: typer.Context,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Partitions per topic (default: topics.partitions).")
    ] = None,
) -> None:
    """Create every topic; existing ones are left untouched."""
    from streams.admin import create_topics

    result = create_topics(cli_context(ctx).settings, partitions=partitions)
    table = Table("topic", "state")
    for name, state in result.items():
        table.add_row(name, state)
    Console().print(table)


@app.command("list")
@guarded
def topics_list(ctx: typer.Context) -> None:
    """List the broker's topics and their partition counts."""
    from streams.admin import list_topics

    table = Table("topic", "partitions")
    for name, count in sorted(list_topics(cli_context(ctx).settings).items()):
        table.add_row(name, str(count))
    Console().print(table)
