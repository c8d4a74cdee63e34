"""``driftloop models ...``: inspect the model registry.

The lead mounts ``models_app`` on the main CLI (``app.add_typer(models_app, name="models")``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.registry.store import ModelRegistry, RegistryError

models_app = typer.Typer(help="Inspect registered model versions, aliases and lineage.")
console = Console()
err_console = Console(stderr=True)

RegistryOption = Annotated[
    str | None,
    typer.Option("--registry", help="Registry root (path or fsspec URL; default: registry_uri)."),
]


def open_registry(uri: str | None) -> ModelRegistry:
    """The registry at ``uri``, else at the loaded settings' ``registry_uri``."""
    if uri is None:
        try:
            from services.cli.main import settings

            uri = settings().registry_uri
        except ImportError:  # pragma: no cover - CLI used without the main app
            from streams.settings import load_settings

            uri = load_settings().registry_uri
    return ModelRegistry(uri)


def _fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[red]error:[/] {exc}")
    return typer.Exit(1)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return "-" if value is None else str(value)


@models_app.command("list")
def list_command(
    model: Annotated[str | None, typer.Argument(help="Model (omit to list models).")] = None,
    registry: RegistryOption = None,
) -> None:
    """List models, or the versions of one model with aliases, lineage and val loss."""
    reg = open_registry(registry)
    try:
        if model is None:
            for name in reg.list_models():
                console.print(name)
            return
        aliases = reg.aliases(model)
        table = Table("version", "aliases", "parent", "request", "snapshot", "val_loss", "created")
        for version in reg.list_versions(model):
            m = reg.manifest(model, version)
            lineage = m.get("lineage", {})
            table.add_row(
                str(version),
                ", ".join(sorted(a for a, v in aliases.items() if v == version)),
                _fmt(lineage.get("parent_version")),
                _fmt(lineage.get("request_id")),
                _fmt(lineage.get("training_snapshot_id")),
                _fmt(m.get("metrics", {}).get("val_loss")),
                _fmt(m.get("created_at")),
            )
        console.print(table)
    except RegistryError as exc:
        raise _fail(exc) from None


@models_app.command("show")
def show_command(
    model: Annotated[str, typer.Argument(help="Model name.")],
    ref: Annotated[str, typer.Argument(help="Version number or alias (e.g. champion).")],
    registry: RegistryOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """Show one version's manifest: lineage, metrics, hyperparameters, file hashes."""
    try:
        shown = open_registry(registry).show(model, ref)
    except RegistryError as exc:
        raise _fail(exc) from None
    if as_json:
        console.print_json(json.dumps(shown, default=str))
        return
    from services.registry.manifest import flatten

    table = Table("field", "value")
    for key, value in flatten(shown).items():
        table.add_row(key, _fmt(value))
    console.print(table)


@models_app.command("diff")
def diff_command(
    model: Annotated[str, typer.Argument(help="Model name.")],
    a: Annotated[str, typer.Argument(help="First version or alias.")],
    b: Annotated[str, typer.Argument(help="Second version or alias.")],
    registry: RegistryOption = None,
) -> None:
    """Differences between two versions' manifests."""
    try:
        changes = open_registry(registry).diff(model, a, b)
    except RegistryError as exc:
        raise _fail(exc) from None
    table = Table("field", a, b)
    for key, (left, right) in changes.items():
        table.add_row(key, _fmt(left), _fmt(right))
    console.print(table)


# `rollback` is added here by the shadow builder:
# @models_app.command("rollback") moves `champion` back by compare-and-set
# (ModelRegistry.set_alias(..., expected=current)) and publishes a ModelPromotion.
