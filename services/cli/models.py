"""``driftloop models list|show|diff|rollback --model M``: the registry; roll a champion back.

Every command takes ``--model``; the positional model of ``list``/``show``/``diff`` stays
as an alias (``models show fraud champion`` and ``models show --model fraud champion``
are the same). The ``driftloop`` command line mounts ``models_app`` as the ``models`` group.
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.cli.context import UserError, cli_context, guarded
from services.registry.store import ModelRegistry, RegistryError

app = typer.Typer(help="Inspect registered model versions, aliases and lineage; roll back.")
models_app = app  # the name the group had before the command-line package
console = Console(width=200)
err_console = Console(stderr=True, soft_wrap=True)
ModelOption = Annotated[str | None, typer.Option("--model", "-m", help="Model name.")]

RegistryOption = Annotated[
    str | None,
    typer.Option("--registry", help="Registry root (path or fsspec URL; default: registry_uri)."),
]


def open_registry(ctx: typer.Context, uri: str | None) -> ModelRegistry:
    """The registry at ``uri``, else at the settings' ``registry_uri``."""
    return ModelRegistry(uri or cli_context(ctx).settings.registry_uri)


def pick_model(option: str | None, positional: str | None, *, required: bool = True) -> str | None:
    """``--model`` or the positional alias (both given: they must agree)."""
    if option and positional and option != positional:
        raise UserError(f"--model {option} and the model argument {positional} differ")
    chosen = option or positional
    if chosen is None and required:
        raise UserError("name the model with --model NAME")
    return chosen


def known_model(registry: ModelRegistry, model: str) -> str:
    """``model`` when the registry has it, else a one-line error listing the known ones."""
    known = registry.list_models()
    if model not in known:
        listed = ", ".join(known) if known else "none yet (train one with `driftloop train`)"
        raise UserError(f"unknown model {model!r}; models in the registry: {listed}")
    return model


def _fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[red]error:[/] {exc}", highlight=False)
    return typer.Exit(1)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return "-" if value is None else str(value)


@app.command("list")
@guarded
def list_command(
    ctx: typer.Context,
    positional: Annotated[
        str | None, typer.Argument(metavar="[MODEL]", help="Same as --model.")] = None,
    model: ModelOption = None,
    registry: RegistryOption = None,
) -> None:
    """List models, or the versions of one model with aliases, lineage and val loss."""
    reg = open_registry(ctx, registry)
    model = pick_model(model, positional, required=False)
    try:
        if model is None:
            for name in reg.list_models():
                console.print(name)
            return
        known_model(reg, model)
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


@app.command("show")
@guarded
def show_command(
    ctx: typer.Context,
    args: Annotated[
        list[str] | None,
        typer.Argument(metavar="[MODEL] [REF]",
                       help="Version number or alias (default: champion); MODEL as --model."),
    ] = None,
    model: ModelOption = None,
    registry: RegistryOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """Show one version's manifest: lineage, metrics, hyperparameters, file hashes."""
    rest = list(args or [])
    if model is None and len(rest) == 2:
        model = rest.pop(0)
    if len(rest) > 1:
        raise UserError("give one version or alias after the model")
    chosen = pick_model(model, None)
    assert chosen is not None
    ref = rest[0] if rest else "champion"
    reg = open_registry(ctx, registry)
    known_model(reg, chosen)
    try:
        shown = reg.show(chosen, ref)
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


@app.command("diff")
@guarded
def diff_command(
    ctx: typer.Context,
    args: Annotated[
        list[str],
        typer.Argument(metavar="[MODEL] A B", help="Two versions or aliases; MODEL as --model."),
    ],
    model: ModelOption = None,
    registry: RegistryOption = None,
) -> None:
    """Differences between two versions' manifests."""
    rest = list(args)
    if model is None and len(rest) == 3:
        model = rest.pop(0)
    if len(rest) != 2:
        raise UserError("give two versions or aliases to compare, e.g. `--model fraud 1 2`")
    a, b = rest
    chosen = pick_model(model, None)
    assert chosen is not None
    reg = open_registry(ctx, registry)
    known_model(reg, chosen)
    try:
        changes = reg.diff(chosen, a, b)
    except RegistryError as exc:
        raise _fail(exc) from None
    table = Table("field", a, b)
    for key, (left, right) in changes.items():
        table.add_row(key, _fmt(left), _fmt(right))
    console.print(table)


@app.command(
    "rollback",
    help="Move `champion` back to the champion before it (compare-and-set), along the "
    "promotion history, never forward, and publish a ModelPromotion with cause rollback. "
    "Kafka is checked first: unreachable, nothing moves. If the event is not "
    "acknowledged after the alias moved, it is kept in the registry's outbox and published "
    "by the next run of this command (which then stops there) or by the shadow service.",
)
@guarded
def rollback_command(
    ctx: typer.Context,
    positional: Annotated[
        str | None, typer.Argument(metavar="[MODEL]", help="Same as --model.")] = None,
    model: ModelOption = None,
    to: Annotated[
        int | None,
        typer.Option("--to", help="Earlier champion to restore (default: the one before)."),
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
        configured_fault,
        rollback_target,
    )
    from streams.producer import DeliveryError, EventProducer

    chosen = pick_model(model, positional)
    assert chosen is not None
    model = chosen
    s = cli_context(ctx).settings
    reg = open_registry(ctx, registry)
    known_model(reg, model)
    try:
        check_broker(s, timeout)
    except PromotionError as exc:
        err_console.print(f"[red]error:[/] {exc} (the champion alias was NOT moved)",
                          highlight=False)
        raise typer.Exit(1) from None
    producer = EventProducer(s, "models-cli",
                             extra_config={"message.timeout.ms": max(int(timeout * 1000), 1)})
    promoter = Promoter(reg, producer, s, flush_timeout_s=timeout,
                        after_alias_moved=configured_fault(s))
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
        console.print(f"{model}: rolled back to v{target}")
    except DeliveryError as exc:  # only raised after the alias has moved
        err_console.print(
            f"[red]error:[/] Kafka did not acknowledge the promotion event ({step}): {exc}\n"
            "the champion alias WAS moved; the event is kept in the registry outbox and is "
            f"published by the next `driftloop models rollback --model {model}` or by the "
            "shadow service."
        )
        raise typer.Exit(3) from None
    except (PromotionError, RegistryError) as exc:
        err_console.print(f"[red]error:[/] {exc} (the champion alias was NOT moved)",
                          highlight=False)
        raise typer.Exit(1) from None
    finally:
        with contextlib.suppress(DeliveryError):  # already reported above
            producer.close(timeout=1.0)
