"""Mistakes a user can make end in one line saying what to do and a non-zero exit.

Each case runs ``driftloop`` as a user does (a child process, the real Feast file
store, the real registry, a port where no broker listens) and checks the exit status,
that stderr holds exactly one ``error:`` line naming the problem, and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from services.features.feast_repo import apply_repo, copy_repo, open_repo
from streams.broker import free_port

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::RuntimeWarning")]


def driftloop(tmp_path: Path, *args: str, **env: str | None
              ) -> subprocess.CompletedProcess[str]:
    """``driftloop ARGS`` in ``tmp_path``; ``env`` adds variables (``None`` removes one)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "OTEL_"))}
    base.update({
        "DRIFTLOOP_STATE_DIR": str(tmp_path / "state"),
        "DRIFTLOOP_REGISTRY_URI": str(tmp_path / "registry"),
        "DRIFTLOOP_FEAST__REPO": str(tmp_path / "repo"),
        "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nobody there
    })
    for name, value in env.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=base,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def window(tmp_path: Path) -> Path:
    path = tmp_path / "window.parquet"
    pd.DataFrame({"amount": [1.0, 2.0], "channel": ["pos", "atm"]}).to_parquet(path)
    return path


def test_missing_and_unreadable_files(tmp_path: Path, window: Path) -> None:
    missing = driftloop(tmp_path, "drift", "check", "--reference", "nope.parquet",
                        "--input", str(window))
    one_error_line(missing, 2, "not found", "nope.parquet")
    (tmp_path / "notes.parquet").write_text("not a parquet file")
    bad = driftloop(tmp_path, "drift", "check", "--reference", str(window),
                    "--input", "notes.parquet")
    one_error_line(bad, 2, "notes.parquet", "not a readable parquet file")


def test_feast_repo_missing_not_applied_and_no_champion(tmp_path: Path, window: Path) -> None:
    no_repo = driftloop(tmp_path, "drift", "check", "--model", "fraud", "--input", str(window))
    one_error_line(no_repo, 2, "no Feast repository", "DRIFTLOOP_FEAST__REPO")
    repo = copy_repo(tmp_path / "repo")
    not_applied = driftloop(tmp_path, "drift", "check", "--model", "fraud",
                            "--input", str(window))
    one_error_line(not_applied, 2, "fraud", "apply the Feast repository")
    apply_repo(open_repo("embedded", repo_path=repo))
    unknown = driftloop(tmp_path, "drift", "check", "--model", "fruad", "--input", str(window))
    one_error_line(unknown, 2, "fruad", "check the model name")
    no_champion = driftloop(tmp_path, "drift", "check", "--model", "fraud",
                            "--input", str(window))
    one_error_line(no_champion, 2, "fraud has no champion yet", "driftloop train")
    no_snapshot = driftloop(tmp_path, "train", "--model", "fraud", "--snapshot", "nope")
    one_error_line(no_snapshot, 2, "Saved dataset nope", "driftloop snapshot create")
    assert "RuntimeWarning" not in no_snapshot.stderr  # Feast's experimental-API notice


def test_an_old_variable_name_is_refused_naming_the_new_one(
    tmp_path: Path, window: Path
) -> None:
    result = driftloop(tmp_path, "drift", "check", "--model", "fraud", "--input", str(window),
                       DRIFTLOOP_FEAST_REPO=str(tmp_path / "old"), DRIFTLOOP_FEAST__REPO=None)
    one_error_line(result, 2, "environment variable DRIFTLOOP_FEAST_REPO",
                   "did you mean DRIFTLOOP_FEAST__REPO?")


def test_unknown_model_in_the_registry_commands(tmp_path: Path) -> None:
    for args in (["models", "list", "--model", "nope"], ["models", "show", "--model", "nope"],
                 ["models", "diff", "--model", "nope", "1", "2"],
                 ["models", "rollback", "--model", "nope"], ["report", "--model", "nope"]):
        result = driftloop(tmp_path, *args)
        one_error_line(result, 2, "unknown model 'nope'")
    assert not (tmp_path / "report.html").exists()


def test_broker_unreachable(tmp_path: Path) -> None:
    listed = driftloop(tmp_path, "topics", "list")
    one_error_line(listed, 1, "Kafka at 127.0.0.1:", "driftloop broker start")
    assert "%3|" not in listed.stderr  # librdkafka's own connection log stays quiet
