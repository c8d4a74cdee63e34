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
