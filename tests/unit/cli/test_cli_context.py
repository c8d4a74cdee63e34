"""The shared command-line context: one-line errors, --verbose tracebacks, flag help."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from services.cli.context import CliContext, UserError, guarded
from services.cli.main import app
from streams.settings import load_settings


def _app(exc: Exception) -> typer.Typer:
    small = typer.Typer()

    @small.command()
    @guarded
    def boom(ctx: typer.Context) -> None:
        raise exc

    @small.callback()
    def _root(ctx: typer.Context, verbose: bool = False) -> None:
        ctx.obj = CliContext(settings=load_settings(), verbose=verbose)

    return small


def test_an_unexpected_error_is_one_line_with_a_hint_and_verbose_shows_the_traceback() -> None:
    result = CliRunner().invoke(_app(RuntimeError("disk on fire\nsecond line")), ["boom"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: RuntimeError: disk on fire (run with --verbose for the traceback)")
    verbose = CliRunner().invoke(_app(RuntimeError("disk on fire")), ["--verbose", "boom"])
    assert verbose.exit_code == 1 and "Traceback" in verbose.output


def test_a_user_error_keeps_its_exit_status() -> None:
    result = CliRunner().invoke(_app(UserError("name the model with --model NAME", 2)),
                                ["boom"])
    assert (result.exit_code, result.output.strip()) == (
        2, "error: name the model with --model NAME")


def test_flags_show_no_value_placeholder_and_options_are_not_cut() -> None:
    for args in (["drift", "check", "--help"], ["models", "show", "--help"], ["--help"]):
        result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, args
    help_text = CliRunner().invoke(app, ["drift", "check", "--help"],
                                   env={"COLUMNS": "80"}).output
    for option in ("--fail-on-drift", "--min-window-events", "--consecutive-windows",
                   "--no-bonferroni", "--reference", "--features"):
        assert option in help_text
