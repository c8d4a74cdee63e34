"""``driftloop data load`` and ``data columns`` as a user runs them, on a real Feast repo.

The model's task comes from the configuration file (``models.fraud.task``): the same
file of labels 0, 1 and 2 is refused for a binary model (nothing written) and loaded
for a three-class one; the snapshot then refuses stored labels that the task does not
allow.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from services.cli.main import app
from services.features.feast_repo import copy_repo
from services.features.generate import Generator, GeneratorConfig
from services.features.parts import list_parts

pytestmark = pytest.mark.integration  # a real Feast repository on disk
END = datetime(2026, 3, 1, tzinfo=UTC)


def _config(tmp_path: Path, task: object) -> Path:
    path = tmp_path / f"driftloop-{abs(hash(str(task)))}.yaml"
    path.write_text(yaml.safe_dump({
        "feast": {"repo": str(tmp_path / "repo"), "variant": "embedded"},
        "state_dir": str(tmp_path / "state"),
        "models": {"fraud": {"task": task}},
    }))
    return path


def _rows(repo: Path, view: str) -> int:
    parts = list_parts(repo / "data" / "offline" / view)
    return sum(len(pd.read_parquet(p)) for p in parts)


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the configuration file speaks (no DRIFTLOOP_* of the shell)."""
    for name in [k for k in os.environ if k.startswith("DRIFTLOOP_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def history(tmp_path: Path) -> pd.DataFrame:
    copy_repo(tmp_path / "repo")
    frame = Generator(GeneratorConfig(seed=9)).history(END, 400)
    frame.loc[frame.index[::50], "is_fraud"] = 2.0  # a third class, 8 rows
    return frame


def test_load_checks_labels_with_the_configured_task(
    tmp_path: Path, history: pd.DataFrame,
) -> None:
    repo = tmp_path / "repo"
    path = tmp_path / "history.csv"
    history.to_csv(path, index=False)
    runner = CliRunner()

    binary = runner.invoke(app, ["-c", str(_config(tmp_path, "binary")), "data", "load",
                                 "--model", "fraud", str(path), "--chunk-rows", "150"])
    assert binary.exit_code == 1, binary.output
    assert ("history.csv: column 'is_fraud': a binary label is 0 or 1, got 2.0 at row 1 "
            "(3 such rows in this chunk; task binary); nothing written") in binary.output
    assert _rows(repo, "fraud_transaction") == 0 and _rows(repo, "fraud_labels") == 0

    three = _config(tmp_path, {"kind": "multiclass", "classes": [0, 1, 2]})
    loaded = runner.invoke(app, ["-c", str(three), "data", "load", "--model", "fraud",
                                 str(path), "--chunk-rows", "150"])
    assert loaded.exit_code == 0, loaded.output
    assert "loaded 400 events (400 labelled) for fraud" in loaded.output
    assert _rows(repo, "fraud_transaction") == _rows(repo, "fraud_card") == 400

    snapshot = ["snapshot", "create", "--model", "fraud", "--start", "2026-02-01",
                "--end", "2026-03-02", "--no-profile"]
    refused = runner.invoke(app, ["-c", str(_config(tmp_path, "binary")), *snapshot])
    assert refused.exit_code == 1, refused.output
    assert "fraud_labels:is_fraud: a binary label is 0 or 1, got 2.0 (8 of 400 rows)" in (
        refused.output)
    made = runner.invoke(app, ["-c", str(three), *snapshot])
    assert made.exit_code == 0, made.output
    assert made.stdout.strip().splitlines()[-1].startswith("fraud-")

    again = runner.invoke(app, ["-c", str(three), "data", "load", "--model", "fraud",
                                str(path), "--replace"])
    assert again.exit_code == 0, again.output
    assert _rows(repo, "fraud_labels") == 400  # replaced, not doubled


def test_columns_and_help_say_what_a_file_holds(tmp_path: Path) -> None:
    copy_repo(tmp_path / "repo")
    runner = CliRunner()
    config = _config(tmp_path, {"kind": "multiclass", "classes": [0, 1, 2]})
    absent = runner.invoke(app, ["-c", str(config), "data", "load", "--model", "fraud",
                                 str(tmp_path / "absent.parquet")])
    assert absent.exit_code == 2 and "does not exist" in absent.output
    listed = runner.invoke(app, ["-c", str(config), "data", "columns", "--model", "fraud"])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0] == "card_id\tstring\trequired\tentity key (the events' entity_id)"
    assert "is_fraud\tlabel\trequired\tlabel (null: an unlabelled event)" in lines
    assert "task: multiclass, classes [0, 1, 2]" in listed.output
    helped = runner.invoke(app, ["data", "load", "--help"], env={"COLUMNS": "200"})
    assert "event_timestamp" in helped.output and "label_time" in helped.output
