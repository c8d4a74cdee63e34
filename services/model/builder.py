"""Build a model for its inputs and task, and rebuild a stored one from its ``model_meta``.

Two builders make the ``nn.Module`` a registry version holds:

- the built-in tabular MLP (:func:`services.model.tabular.build_tabular`), used when a
  model names no factory;
- a user's **model factory**, named in the model's settings as
  ``models.<m>.factory: "package.module:function"``.

The factory protocol
--------------------
The factory is called with one argument, a :class:`ModelSchema` (the model's inputs
and task), and returns an untrained ``torch.nn.Module`` whose
``forward(numeric, categorical)`` takes

- ``numeric``: float32 ``[batch, schema.n_numeric_inputs]``, the standardised value of
  each numeric feature (in ``schema.numeric`` order) followed by one 0/1 missing
  indicator per feature;
- ``categorical``: int64 ``[batch, len(schema.categorical)]``; feature ``j`` takes ids
  ``0..schema.cardinalities[j] - 1``, where 0 is the unknown bucket and id ``i + 1`` is
  ``schema.vocabularies[j][i]``;

and returns ``[batch]`` for a binary (one logit) or regression (one value, in
standardised target units) task, ``[batch, K]`` (K = ``schema.n_outputs`` class logits
in ``schema.classes`` order) for a multiclass task. Example::

    def build(schema: ModelSchema) -> nn.Module:
        return MyNet(schema.n_numeric_inputs, schema.cardinalities, schema.n_outputs)

driftloop does everything around it: preprocessing, the loss per task, fine-tuning from
the last version with replay, checkpoints and resume, DDP, mixed precision, the
registry. The factory is checked once when a run builds it: a missing module or
function, an exception, a return value that is not a module, or a wrong output shape
on a dry forward over a 2-row batch is a :class:`FactoryError` (one line naming the
factory), never a traceback.

Stored versions
---------------
A factory version's ``model_meta`` (the manifest's ``architecture``) holds the factory
path, the sha256 of the factory's source file and the schema, so
:func:`module_from_meta` imports the factory again and rebuilds the same module (the
module must be importable wherever the version is scored). When the source file's
hash differs from the stored one, a :class:`FactorySourceChangedWarning` is issued and
the module is rebuilt anyway; if its parameters no longer fit the stored weights,
:func:`restore_module` raises :class:`FactoryError` saying so.

Fine-tuning a factory version (:func:`grow_factory`) builds a fresh module from the
factory with the parent's schema, its vocabularies extended with the categories first
seen after the parent, and loads the parent's weights into it. A tensor whose first
dimension grew from a categorical's old cardinality to its new one (an embedding
table, a per-category bias) gets one row per new id, a copy of the unknown row 0: the
parent scored an unseen category through the unknown bucket, so the grown module
predicts exactly what the parent did until training moves the new rows. A module whose
parameters change in any other way with the vocabularies (a one-hot layer, say) cannot
be grown that way; it is rebuilt with the parent's schema and new categories stay unknown.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from services.model.preprocessing import UNKNOWN_INDEX, InputSchema, Preprocessor
from services.model.tabular import TabularArchitecture, TabularModel, build_tabular
from services.model.task import Task

FACTORY_META_FORMAT = "factory/1"
_MESSAGE_LIMIT = 300


class FactoryError(ValueError):
    """A model factory cannot be used (the one-line message names the factory)."""


class FactorySourceChangedWarning(UserWarning):
    """A factory's source file differs from the one a stored version was built with."""


@dataclass(frozen=True)
class ModelSchema:
    """What a model factory is told: the encoded inputs and the task (see module doc)."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    vocabularies: tuple[tuple[str, ...], ...]
    task: str
    classes: tuple[int, ...]
    n_outputs: int

    @property
    def n_numeric_inputs(self) -> int:
        """Width of the numeric input: a value and a missing indicator per feature."""
        return 2 * len(self.numeric)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Ids per categorical feature (its categories plus the unknown bucket 0)."""
        return tuple(len(v) + 1 for v in self.vocabularies)

    @property
    def inputs(self) -> InputSchema:
        """The encoded inputs alone (what the built-in model is sized for)."""
        return InputSchema(self.numeric, self.categorical, self.cardinalities)

    @classmethod
    def of(cls, preprocessor: Preprocessor, task: Task) -> ModelSchema:
        """The schema of ``preprocessor``'s encoded inputs for ``task``."""
        return cls(
            tuple(s.name for s in preprocessor.numeric),
            tuple(v.name for v in preprocessor.categorical),
            tuple(v.categories for v in preprocessor.categorical),
            task.kind,
            tuple(task.classes),
            task.n_outputs,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in a factory version's ``model_meta``."""
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "vocabularies": [list(v) for v in self.vocabularies],
            "task": self.task,
            "classes": list(self.classes),
            "n_outputs": self.n_outputs,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSchema:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(str(n) for n in data["numeric"]),
            tuple(str(n) for n in data["categorical"]),
            tuple(tuple(str(c) for c in v) for v in data["vocabularies"]),
            str(data["task"]),
            tuple(int(c) for c in data["classes"]),
            int(data["n_outputs"]),
        )


@dataclass(frozen=True)
class BuiltModel:
    """A fresh module and the ``model_meta`` that rebuilds it."""

    module: nn.Module
    meta: dict[str, Any]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def _split(path: str) -> tuple[str, str]:
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise FactoryError(f"model factory {path!r}: expected 'package.module:function'")
    return module, name


def load_factory(path: str) -> Callable[[ModelSchema], Any]:
    """The callable ``path`` names (``package.module:function``), or :class:`FactoryError`."""
    module_name, name = _split(path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or anything the module raises on import
        raise FactoryError(
            f"model factory {path!r}: cannot import {module_name}: "
            f"{type(exc).__name__}: {_one_line(exc)}") from None
    function = getattr(module, name, None)
    if function is None:
        raise FactoryError(f"model factory {path!r}: module {module_name} has no {name!r}")
    if not callable(function):
        raise FactoryError(f"model factory {path!r}: {name!r} is not callable")
    return function  # type: ignore[no-any-return]


def factory_source_sha256(path: str) -> str | None:
    """sha256 of the source file of the factory's module (None when it has no file)."""
    module = importlib.import_module(_split(path)[0])
    try:
        source = inspect.getsourcefile(module)
    except TypeError:  # built-in module
        return None
    if source is None or not Path(source).is_file():
        return None
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


def _dry_run(path: str, module: nn.Module, schema: ModelSchema) -> None:
    """Forward a 2-row batch (zeros, unknown categories) and check the output shape."""
    numeric = torch.zeros(2, schema.n_numeric_inputs, dtype=torch.float32)
    categorical = torch.zeros(2, len(schema.categorical), dtype=torch.int64)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(numeric, categorical)
    except Exception as exc:
        raise FactoryError(
            f"model factory {path!r}: forward(numeric, categorical) failed on a 2-row batch: "
            f"{type(exc).__name__}: {_one_line(exc)}") from None
    finally:
        module.train(was_training)
    expected = (2, schema.n_outputs) if schema.task == "multiclass" else (2,)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape != expected:
        got = f"shape {list(shape)}" if shape is not None else f"a {type(out).__name__}"
        raise FactoryError(
            f"model factory {path!r}: forward returned {got} for 2 rows; a {schema.task} "
            f"model returns a tensor of shape {list(expected)}")


def call_factory(path: str, schema: ModelSchema) -> nn.Module:
    """Import and call the factory, then check what it built (:class:`FactoryError`)."""
    function = load_factory(path)
    try:
        module = function(schema)
    except Exception as exc:
        raise FactoryError(
            f"model factory {path!r} raised {type(exc).__name__}: {_one_line(exc)}") from None
    if not isinstance(module, nn.Module):
        raise FactoryError(
            f"model factory {path!r} returned {type(module).__name__}, not a torch.nn.Module")
    _dry_run(path, module, schema)
    return module


def _factory_meta(path: str, schema: ModelSchema) -> dict[str, Any]:
    return {
        "format": FACTORY_META_FORMAT,
        "factory": path,
        "source_sha256": factory_source_sha256(path),
        "schema": schema.to_dict(),
    }


def build_model(
    schema: ModelSchema, arch: TabularArchitecture, factory: str | None = None
) -> BuiltModel:
    """A fresh module for ``schema``: the user's ``factory``, else the built-in MLP."""
    if factory is None:
        module = build_tabular(schema.inputs, arch, schema.n_outputs, schema.task)
        return BuiltModel(module, module.meta)
    return BuiltModel(call_factory(factory, schema), _factory_meta(factory, schema))


def build_module(
    schema: InputSchema, arch: TabularArchitecture, n_outputs: int = 1
) -> TabularModel:
    """A fresh built-in tabular module for ``schema`` with ``n_outputs`` outputs."""
    return build_tabular(schema, arch, n_outputs)


def is_factory_meta(meta: Mapping[str, Any]) -> bool:
    """Whether ``meta`` describes a factory-built module."""
    return meta.get("format") == FACTORY_META_FORMAT


def meta_outputs(meta: Mapping[str, Any]) -> int:
    """Outputs per row of the module ``meta`` describes."""
    if is_factory_meta(meta):
        return int(meta["schema"]["n_outputs"])
    return int(meta["n_outputs"])


def rebuild_factory(meta: Mapping[str, Any]) -> BuiltModel:
    """A fresh module from a factory meta; warns when the factory's source changed.

    The returned meta records the factory's current source hash.
    """
    path = str(meta["factory"])
    schema = ModelSchema.from_dict(meta["schema"])
    module = call_factory(path, schema)
    current = _factory_meta(path, schema)
    stored = meta.get("source_sha256")
    if stored and current["source_sha256"] != stored:
        warnings.warn(
            f"model factory {path!r}: source changed since the version was built "
            f"(sha256 {str(stored)[:12]} -> {str(current['source_sha256'])[:12]})",
            FactorySourceChangedWarning, stacklevel=2)
    return BuiltModel(module, current)


def module_from_meta(meta: Mapping[str, Any]) -> nn.Module:
    """An untrained module shaped as ``meta`` describes (ValueError for an unknown format)."""
    if is_factory_meta(meta):
        return rebuild_factory(meta).module
    return TabularModel.from_meta(dict(meta))


def load_weights(module: nn.Module, meta: Mapping[str, Any],
                 state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load ``state_dict`` into ``module``; a factory module that no longer fits its stored
    weights is a :class:`FactoryError` naming the factory."""
    try:
        module.load_state_dict(dict(state_dict))
    except RuntimeError as exc:
        if not is_factory_meta(meta):
            raise
        raise FactoryError(
            f"model factory {meta['factory']!r} built a module that does not fit the stored "
            f"weights (has its source changed?): {_one_line(exc)}") from None


def restore_module(meta: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """The stored module: rebuilt from ``meta``, weights loaded, on CPU, in eval mode."""
    module = module_from_meta(meta)
    load_weights(module, meta, state_dict)
    module.eval()
    return module


def _grown_weights(
    state_dict: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
    growth: set[tuple[int, int]],
) -> dict[str, torch.Tensor] | None:
    """``state_dict`` fitted to ``target``'s shapes by appending copies of the unknown row
    to tensors whose first dimension grew as a cardinality did (``(old, new)`` in
    ``growth``); None when any other shape or key differs."""
    if set(state_dict) != set(target):
        return None
    weights: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        want = target[key].shape
        if value.shape == want:
            weights[key] = value
            continue
        grew = value.dim() > 0 and value.shape[1:] == want[1:]
        if not grew or (value.shape[0], want[0]) not in growth:
            return None
        extra = value[UNKNOWN_INDEX : UNKNOWN_INDEX + 1].expand(want[0] - value.shape[0],
                                                               *value.shape[1:])
        weights[key] = torch.cat([value, extra.clone()], dim=0)
    return weights


def grow_factory(
    meta: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor],
    vocabularies: tuple[tuple[str, ...], ...],
) -> BuiltModel | None:
    """The parent's factory module rebuilt for ``vocabularies`` (the parent's, with new
    categories appended) holding the parent's weights, new category rows copied from the
    unknown row (see the module doc); None when nothing grew or the module's parameters
    do not grow that way (then the caller keeps the parent's schema)."""
    parent = ModelSchema.from_dict(meta["schema"])
    schema = dataclasses.replace(parent, vocabularies=vocabularies)
    if schema == parent or any(
        new[: len(old)] != old for old, new in zip(parent.vocabularies, vocabularies, strict=True)
    ):
        return None
    built = rebuild_factory({**meta, "schema": schema.to_dict()})
    growth = {
        (o, n) for o, n in zip(parent.cardinalities, schema.cardinalities, strict=True) if n > o
    }
    weights = _grown_weights(state_dict, built.module.state_dict(), growth)
    if weights is None:
        return None
    built.module.load_state_dict(weights)
    return built
