from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from services.cli.models import models_app
from services.registry.store import ModelRegistry


def test_list_show_diff(tmp_path: Path, artifacts: dict, register: Any) -> None:
    root = str(tmp_path / "reg")
    registry = ModelRegistry(root)
    register(registry, artifacts, "r1")
    register(registry, artifacts, "r2", parent=1)
    registry.set_alias("m", "champion", 2, expected=None)
    runner = CliRunner()
    out = runner.invoke(models_app, ["list", "m", "--registry", root], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "champion" in out.output and "snap-r2" in out.output
    out = runner.invoke(models_app, ["show", "m", "champion", "--registry", root, "--json"])
    assert out.exit_code == 0 and '"snap-r2"' in out.output
    out = runner.invoke(
        models_app, ["diff", "m", "1", "2", "--registry", root], env={"COLUMNS": "200"}
    )
    assert out.exit_code == 0 and "lineage.parent_version" in out.output
    out = runner.invoke(models_app, ["show", "m", "9", "--registry", root])
    assert out.exit_code == 1


def test_every_command_takes_model_as_an_option_and_the_positional_stays(
    tmp_path: Path, artifacts: dict, register: Any
) -> None:
    root = str(tmp_path / "reg")
    registry = ModelRegistry(root)
    register(registry, artifacts, "r1")
    register(registry, artifacts, "r2", parent=1)
    registry.set_alias("m", "champion", 2, expected=None)
    runner = CliRunner()
    wide = {"COLUMNS": "200"}
    pairs = [
        (["list", "--model", "m"], ["list", "m"]),
        (["show", "--model", "m", "1", "--json"], ["show", "m", "1", "--json"]),
        (["diff", "--model", "m", "1", "2"], ["diff", "m", "1", "2"]),
    ]
    for option, positional in pairs:
        a = runner.invoke(models_app, [*option, "--registry", root], env=wide)
        b = runner.invoke(models_app, [*positional, "--registry", root], env=wide)
        assert a.exit_code == 0, a.output
        assert a.output == b.output
    champion = runner.invoke(models_app, ["show", "--model", "m", "--json", "--registry", root])
    assert champion.exit_code == 0 and '"snap-r2"' in champion.output  # default: champion
    clash = runner.invoke(models_app, ["list", "m", "--model", "x", "--registry", root])
    assert clash.exit_code == 2 and "differ" in clash.output
