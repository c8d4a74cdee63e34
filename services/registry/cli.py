"""``driftloop models ...``: inspect the model registry; roll a champion back.

The ``driftloop`` command line (``services.cli``) mounts ``models_app`` as the ``models``
group.
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.registry.store import ModelRegistry, RegistryError

models_app = typer.Typer(help="Inspect registered model versions, aliases and lineage.")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

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
            table.add_row(
                str(version),
                ", ".join(sorted(a for a, v in aliases.items() if v == version)),
                _fmt(m.lineage.parent_version),
                _fmt(m.lineage.request_id),
                _fmt(m.lineage.training_snapshot_id),
                _fmt(m.metrics.get("val_loss")),
                _fmt(m.created_at.isoformat()),
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


@models_app.command(
    "rollback",
    help="Move `champion` back (compare-and-set) and publish a ModelPromotion with cause "
    "rollback. Kafka is checked first: unreachable, nothing moves. If the event is not "
    "acknowledged after the alias moved, it is kept in the registry's outbox and published "
    "by the next run of this command (which then stops there) or by the shadow service.",
)
def rollback_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name.")],
    to: Annotated[
        int | None,
        typer.Option("--to", help="Version to restore (default: the champion's previous)."),
    ] = None,
    registry: RegistryOption = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for Kafka (reachability and delivery).")
    ] = 15.0,
) -> None:
    """Move ``champion`` back (compare-and-set) and publish a ModelPromotion (cause rollback).

    Kafka is checked first: unreachable, nothing moves. If the event is not acknowledged
    after the alias moved, the move stays in the registry's outbox and is published by
    the next run of this command (which then stops there) or by the shadow service.
    """
    from services.shadow.promotion import (
        Promoter,
        PromotionError,
        check_broker,
        rollback_target,
    )
    from streams.producer import DeliveryError, EventProducer

    try:
        from services.cli.main import settings

        s = settings()
    except ImportError:  # pragma: no cover - CLI used without the main app
        from streams.settings import load_settings

        s = load_settings()
    reg = open_registry(registry or s.registry_uri)
    try:
        check_broker(s, timeout)
    except PromotionError as exc:
        err_console.print(f"[red]error:[/] {exc}\nthe champion alias was NOT moved.")
        raise typer.Exit(1) from None
    producer = EventProducer(s, "models-cli",
                             extra_config={"message.timeout.ms": max(int(timeout * 1000), 1)})
    promoter = Promoter(reg, producer, s, flush_timeout_s=timeout)
    step = "completing an earlier promotion"
    try:
        done = [r for r in promoter.recover(model) if r.outcome == "published"]
        if done:
            for r in done:
                i = r.intent
                console.print(f"completed an earlier {i.cause} of {model}: v{i.previous_champion}"
                              f" -> v{i.new_champion} (event {i.intent_id} published)")
            console.print("not rolling back further; run the command again to do so.")
            return
        current, target = rollback_target(reg, model, to)
        intent = promoter.intent(model, target, expected=current, cause="rollback")
        step = f"rolling back v{current} -> v{target}"
        promoter.move(intent)
        console.print(f"{model}: champion v{current} -> v{target} (rollback); "
                      f"promotion {intent.intent_id} published to "
                      f"{s.topic('models.promotions')}")
    except DeliveryError as exc:  # only raised after the alias has moved
        err_console.print(
            f"[red]error:[/] Kafka did not acknowledge the promotion event ({step}): {exc}\n"
            "the champion alias WAS moved; the event is kept in the registry outbox and is "
            f"published by the next `driftloop models rollback --model {model}` or by the "
            "shadow service."
        )
        raise typer.Exit(3) from None
    except (PromotionError, RegistryError) as exc:
        err_console.print(f"[red]error:[/] {exc}\nthe champion alias was NOT moved.")
        raise typer.Exit(1) from None
    finally:
        with contextlib.suppress(DeliveryError):  # already reported above
            producer.close(timeout=1.0)
