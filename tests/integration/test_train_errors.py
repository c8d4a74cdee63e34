"""``driftloop train`` refuses a broken model factory and labels of another task with one
line, as a user meets them: a child process, a YAML configuration, a real snapshot of
the fraud history in the real Feast store, the real registry (nothing registered)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from test_cli_errors import driftloop, one_error_line

from services.features.feast_repo import apply_repo, copy_repo, open_repo
from services.registry.store import ModelRegistry

# A soak (-m soak, make soak): every case is a child `driftloop train` after a module
# fixture of child commands (about 6 minutes on 2 cores); tests/unit/model covers the
# factory errors in-process and tests/unit/model/test_task.py the label checks.
pytestmark = [pytest.mark.integration, pytest.mark.soak,
              pytest.mark.filterwarnings("ignore::RuntimeWarning")]

FACTORIES = '''
import torch
from torch import nn


class Wide(nn.Module):
    """Three outputs per row: the wrong shape for a binary model."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 3)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.linear(numeric)


def wrong_shape(schema):
    return Wide(schema.n_numeric_inputs)


def raises(schema):
    raise RuntimeError("no GPU for this net")


def not_a_module(schema):
    return "a string"
'''


def _train(tmp_path: Path, snapshot: str, **model: object):
    config = tmp_path / "driftloop.yaml"
    config.write_text(yaml.safe_dump({"models": {"fraud": model}}))
    return driftloop(tmp_path, "-c", str(config), "train", "--model", "fraud",
                     "--snapshot", snapshot, PYTHONPATH=str(tmp_path))


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp_path = tmp_path_factory.mktemp("train-errors")
    apply_repo(open_repo("embedded", repo_path=copy_repo(tmp_path / "repo")))
    made = driftloop(tmp_path, "data", "generate", "--history-rows", "800",
                     "--history-end", "2026-01-02T00:00:00+00:00")
    assert made.returncode == 0, made.stderr
    snap = driftloop(tmp_path, "snapshot", "create", "--model", "fraud",
                     "--start", "2025-11-01T00:00:00+00:00",
                     "--end", "2026-01-03T00:00:00+00:00", "--no-profile")
    assert snap.returncode == 0, snap.stderr
    (tmp_path / "userzoo").mkdir()
    (tmp_path / "userzoo" / "__init__.py").write_text("")
    (tmp_path / "userzoo" / "nets.py").write_text(textwrap.dedent(FACTORIES))
    return tmp_path, snap.stdout.strip().splitlines()[-1]


# (a missing function and a return value that is not a module: tests/unit/model/
# test_model_factory.py; here, one child process per case is the cost)
@pytest.mark.parametrize(("factory", "words"), [
    ("userzoo.nowhere:build", ("userzoo.nowhere:build", "import")),
    ("userzoo.nets:wrong_shape", ("userzoo.nets:wrong_shape", "shape")),
    ("userzoo.nets:raises", ("userzoo.nets:raises", "no GPU for this net")),
])
def test_a_broken_factory_is_one_line_at_train_and_registers_nothing(
    snapshot: tuple[Path, str], factory: str, words: tuple[str, ...],
) -> None:
    tmp_path, snapshot_id = snapshot
    result = _train(tmp_path, snapshot_id, factory=factory)
    line = one_error_line(result, 2, *words)
    assert len(line) < 400, line
    assert ModelRegistry(str(tmp_path / "registry")).list_versions("fraud") == []


def test_labels_of_another_task_are_refused_naming_field_and_value(
    snapshot: tuple[Path, str],
) -> None:
    tmp_path, snapshot_id = snapshot
    result = _train(tmp_path, snapshot_id, task={"kind": "multiclass", "classes": [5, 6]})
    one_error_line(result, 2, "is_fraud", "classes [5, 6]", "got 0")
    assert ModelRegistry(str(tmp_path / "registry")).list_versions("fraud") == []
