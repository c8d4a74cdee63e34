"""What every command shares: the loaded settings, verbosity, and one-line errors.

The top-level callback loads the configuration once and puts a :class:`CliContext`
on Typer's context object; commands take ``ctx: typer.Context`` and call
:func:`cli_context`. A command group used on its own (tests) loads the settings itself.

:func:`guarded` wraps every command so that a mistake a user can make (unknown model,
missing or unreadable file, broker down, Feast repo not applied, no champion yet) ends
with one line saying what to do and a non-zero exit, never a traceback; ``--verbose``
adds the traceback.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import typer
from rich.console import Console

from streams.settings import Settings, load_settings

err_console = Console(stderr=True, soft_wrap=True)  # paths and ids stay on one line
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CliContext:
    """The settings (read once) and how talkative to be."""

    settings: Settings
    verbose: bool = False


class UserError(Exception):
    """A mistake the user can fix; the message says how. ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _is_context(value: object) -> bool:
    """Whether ``value`` is the command's click context (Typer may bundle its own click)."""
    return callable(getattr(value, "find_root", None)) and hasattr(value, "obj")


def cli_context(ctx: typer.Context | None) -> CliContext:
    """The context the top-level callback built (or a fresh one from the configuration)."""
    root = ctx.find_root() if ctx is not None else None
    if root is not None and isinstance(root.obj, CliContext):
        return root.obj
    made = CliContext(settings=load_settings())
    if root is not None:
        root.obj = made
    return made


def explain(exc: BaseException, settings: Settings | None = None) -> tuple[str, int] | None:
    """One line and an exit status for the errors a user can cause; None for others."""
    if isinstance(exc, UserError):
        return str(exc), exc.code
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or str(exc)
        return f"file not found: {name}; check the path", 2
    if isinstance(exc, IsADirectoryError | PermissionError):
        return f"cannot read {exc.filename}: {exc.strerror}", 2
    name = type(exc).__name__
    module = type(exc).__module__
    kafka = settings.kafka.bootstrap_servers if settings is not None else "the configured broker"
    if isinstance(exc, TimeoutError):
        return (f"timed out waiting for Kafka at {kafka}{': ' + str(exc) if str(exc) else ''}; "
                "is the broker running? (`driftloop broker start`)"), 1
    if module.startswith("pyarrow") or name in {"ArrowInvalid", "ArrowIOError"}:
        return f"not a readable parquet file ({str(exc).splitlines()[0]})", 2
    if name == "FeastRepoError":
        return str(exc), 2
    if name in {"FeatureServiceNotFoundException", "UnknownModelError"}:
        repo = f" at {settings.feast.repo}" if settings is not None else ""
        return (f"{str(exc).splitlines()[0]}: check the model name, or apply the Feast "
                f"repository{repo} first (`driftloop data generate` applies it)"), 2
    if name in {"FeatureViewNotFoundException", "SavedDatasetNotFound"}:
        return (f"{str(exc).splitlines()[0]} (apply the Feast repository and create the "
                "snapshot first: `driftloop data generate`, `driftloop snapshot create`)"), 2
    if name == "KafkaException" or name == "DeliveryError" or module.startswith("confluent"):
        return (f"cannot reach Kafka at {kafka} ({str(exc).splitlines()[0]}); is the broker "
                "running? (`driftloop broker start`)"), 1
    if name == "RegistryError" or name.endswith("RegistryError") or name == "InvalidNameError":
        return str(exc).splitlines()[0], 2
    return None


def guarded(command: F) -> F:
    """Run ``command`` with the user-error handling described in the module docstring."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            ctx = next((a for a in (*args, *kwargs.values()) if _is_context(a)), None)
            state = cli_context(ctx) if ctx is not None else None
            explained = explain(exc, state.settings if state else None)
            message, code = explained or (
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                "(run with --verbose for the traceback)", 1)
            if state is not None and state.verbose:
                err_console.print(traceback.format_exc(), markup=False, highlight=False)
            err_console.print(f"[red]error:[/] {message}", highlight=False)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def show_flags_as_flags() -> None:
    """Help without a ``<bool>`` placeholder after on/off flags (they take no value).

    Typer's rich help prints every option's type, flags included, which reads as if
    ``--json`` wanted a value.
    """
    from typer.core import TyperOption

    original = TyperOption.display_type_rich
    if getattr(original, "_driftloop", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag and self.metavar is None else original(self, ctx)

    display_type_rich._driftloop = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` and return the ``typer.Exit`` to raise."""
    err_console.print(f"[red]error:[/] {message}", highlight=False)
    return typer.Exit(code)
