"""A user's model factory: each way it can fail is one line naming it; a factory version
is rebuilt from its stored meta (import again, source hash checked)."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from samples.user_factories import ONE_HOT_SOURCE

from services.model.builder import (
    FactoryError,
    FactorySourceChangedWarning,
    ModelSchema,
    build_model,
    grow_factory,
    restore_module,
)
from services.model.preprocessing import Preprocessor
from services.model.task import Task
from services.training.config import ArchitectureConfig
from services.training.synthetic import synthetic_frame, synthetic_spec

SPEC = synthetic_spec(n_numeric=3, n_categorical=2)
ARCH = ArchitectureConfig(hidden_sizes=(8,))

SOURCE = '''
import torch
from torch import nn

WIDTH = 3


class Net(nn.Module):
    def __init__(self, schema):
        super().__init__()
        self.embs = nn.ModuleList(nn.Embedding(c, WIDTH) for c in schema.cardinalities)
        width = schema.n_numeric_inputs + WIDTH * len(schema.cardinalities)
        self.head = nn.Linear(width, schema.n_outputs)
        self.multi = schema.task == "multiclass"

    def forward(self, numeric, categorical):
        parts = [numeric] + [e(categorical[:, j]) for j, e in enumerate(self.embs)]
        out = self.head(torch.cat(parts, dim=1))
        return out if self.multi else out.squeeze(1)


class Column(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.head = nn.Linear(width, 1)

    def forward(self, numeric, categorical):
        return self.head(numeric)


def build(schema):
    return Net(schema)


def raises(schema):
    raise RuntimeError("needs a GPU\\nand a second line")


def not_a_module(schema):
    return 42


def forward_fails(schema):
    return nn.Linear(schema.n_numeric_inputs, 1)


def column(schema):
    return Column(schema.n_numeric_inputs)

''' + ONE_HOT_SOURCE + '''

NOT_CALLABLE = 7
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A fresh importable module holding the factories above: (name, file)."""
    name = f"user_models_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield name, path
    sys.modules.pop(name, None)


def _schema(task: Task) -> ModelSchema:
    return ModelSchema.of(Preprocessor.fit(SPEC, synthetic_frame(200, SPEC)), task)


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("missing", "has no 'missing'"),
        ("NOT_CALLABLE", "is not callable"),
        ("raises", "raised RuntimeError: needs a GPU and a second line"),
        ("not_a_module", "returned int, not a torch.nn.Module"),
        ("forward_fails", "forward(numeric, categorical) failed on a 2-row batch: TypeError"),
        ("column", "forward returned shape [2, 1] for 2 rows; a binary model returns a tensor "
                   "of shape [2]"),
    ],
)
def test_each_factory_failure_is_one_line_naming_the_factory(
    user_module: tuple[str, Path], function: str, message: str
) -> None:
    path = f"{user_module[0]}:{function}"
    with pytest.raises(FactoryError) as caught:
        build_model(_schema(Task()), ARCH, path)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"model factory {path!r}")
    assert message in text


def test_a_missing_module_is_one_line() -> None:
    with pytest.raises(FactoryError, match=r"cannot import no_such_pkg\.models: "
                                           r"ModuleNotFoundError") as caught:
        build_model(_schema(Task()), ARCH, "no_such_pkg.models:build")
    assert "\n" not in str(caught.value)


def test_multiclass_factory_must_return_k_columns(user_module: tuple[str, Path]) -> None:
    task = Task(kind="multiclass", classes=(0, 1, 2))
    built = build_model(_schema(task), ARCH, f"{user_module[0]}:build")
    assert built.meta["schema"]["n_outputs"] == 3
    with pytest.raises(FactoryError, match=r"shape \[2, 1\].*\[2, 3\]"):
        build_model(_schema(task), ARCH, f"{user_module[0]}:column")


def test_factory_version_rebuilds_from_its_meta(user_module: tuple[str, Path]) -> None:
    name = user_module[0]
    schema = _schema(Task(kind="regression"))
    built = build_model(schema, ARCH, f"{name}:build")
    meta = built.meta
    assert meta["factory"] == f"{name}:build"
    assert len(meta["source_sha256"]) == 64
    assert ModelSchema.from_dict(meta["schema"]) == schema
    torch.manual_seed(0)
    for p in built.module.parameters():
        torch.nn.init.normal_(p)
    numeric = torch.randn(4, schema.n_numeric_inputs)
    categorical = torch.ones(4, 2, dtype=torch.int64)
    restored = restore_module(meta, built.module.state_dict())
    assert not restored.training
    built.module.eval()
    torch.testing.assert_close(restored(numeric, categorical), built.module(numeric, categorical))


def test_changed_factory_source_warns_and_a_changed_shape_is_refused(
    user_module: tuple[str, Path]
) -> None:
    name, path = user_module
    built = build_model(_schema(Task()), ARCH, f"{name}:build")
    state = built.module.state_dict()
    path.write_text(SOURCE + "\n# a comment\n")
    with pytest.warns(FactorySourceChangedWarning, match=f"{name}:build.*source changed"):
        restore_module(built.meta, state)  # same parameters: rebuilt, with a warning

    path.write_text(SOURCE.replace("WIDTH = 3", "WIDTH = 5"))
    sys.modules.pop(name, None)
    importlib.invalidate_caches()
    with pytest.warns(FactorySourceChangedWarning), pytest.raises(
            FactoryError, match="does not fit the stored weights") as caught:
        restore_module(built.meta, state)
    assert "\n" not in str(caught.value)


def test_fine_tuning_grows_a_factory_modules_embeddings_keeping_its_predictions(
    user_module: tuple[str, Path]
) -> None:
    # catches: new categories scored as unknown forever (no rows of their own), rows grown
    # from something else than the unknown row (predictions jump before any training),
    # known ids moved, or a module grown whose layout cannot take the parent's weights
    name = user_module[0]
    schema = _schema(Task(kind="regression"))
    parent = build_model(schema, ARCH, f"{name}:build")
    torch.manual_seed(0)
    for p in parent.module.parameters():
        torch.nn.init.normal_(p)
    parent.module.eval()
    state = parent.module.state_dict()
    vocabularies = (schema.vocabularies[0] + ("new_a", "new_b"), schema.vocabularies[1])
    grown = grow_factory(parent.meta, state, vocabularies)
    assert grown is not None
    assert ModelSchema.from_dict(grown.meta["schema"]).vocabularies == vocabularies
    card = schema.cardinalities[0]
    assert grown.module.embs[0].weight.shape[0] == card + 2
    grown.module.eval()
    numeric = torch.randn(3, schema.n_numeric_inputs)
    known = torch.tensor([[1, 2], [0, 1], [card - 1, 0]])
    new, unknown = known.clone(), known.clone()
    new[:, 0] = torch.tensor([card, card + 1, card])
    unknown[:, 0] = 0
    with torch.no_grad():
        torch.testing.assert_close(grown.module(numeric, known), parent.module(numeric, known))
        torch.testing.assert_close(grown.module(numeric, new), parent.module(numeric, unknown))

    assert grow_factory(parent.meta, state, schema.vocabularies) is None  # nothing new
    shuffled = ((*reversed(schema.vocabularies[0]), "new_a"), schema.vocabularies[1])
    assert grow_factory(parent.meta, state, shuffled) is None  # not an extension
    one_hot = build_model(schema, ARCH, f"{name}:one_hot")  # width follows the vocabularies
    assert grow_factory(one_hot.meta, one_hot.module.state_dict(), vocabularies) is None
