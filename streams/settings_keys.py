"""Unknown configuration keys: found at any depth and named with where they came from.

A key the settings do not define is refused, never ignored: a typo (``kafak:`` in the
YAML file, ``DRIFTLOOP_STATE_DRI`` in the environment) would otherwise leave the
defaults in force in silence. Each problem names the key's full path and its source
(the YAML file, or the environment variable) and, where a known key is close, the one
meant (:mod:`difflib`).

The walk follows the settings' own types: nested models, ``dict[str, Model]`` sections
whose keys are names the user picks (``models.<name>``), and sequences of models. A
``dict`` of plain values (``kafka.extra``, ``observability.otel``) takes any key.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

CUTOFF = 0.6
"""The least :class:`difflib.SequenceMatcher` ratio for a suggestion."""

Path_ = tuple[str, ...]


class ConfigurationError(ValueError):
    """The configuration cannot be read; the message says what and where, on one line."""


class UnknownSettingError(ConfigurationError):
    """Keys the settings do not define; the message names each, its source, and a guess."""


def _model(annotation: Any) -> type[BaseModel] | None:
    """The settings model of ``X`` or ``X | None``, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [m for a in typing.get_args(annotation) if (m := _model(a)) is not None]
        return found[0] if len(found) == 1 else None
    return None


def _shape(annotation: Any) -> tuple[str, type[BaseModel] | None]:
    """What a field holds: ``model``, ``mapping`` or ``sequence`` of a model, or a ``leaf``."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if origin in (dict, Mapping):
        inner = _model(args[1]) if len(args) == 2 else None
        return ("mapping", inner) if inner is not None else ("leaf", None)
    if origin in (tuple, list):
        inner = _model(args[0]) if len(args) == 1 else None
        return ("sequence", inner) if inner is not None else ("leaf", None)
    inner = _model(annotation)
    return ("model", inner) if inner is not None else ("leaf", None)


def unknown_keys(model: type[BaseModel], data: Any, path: Path_ = ()) -> Iterator[Path_]:
    """The path of every key in ``data`` (read as ``model`` at ``path``) it does not define."""
    if not isinstance(data, Mapping):
        return  # a shorthand (``online: false``) or a wrong type: validation's to judge
    for key, value in data.items():
        here = (*path, str(key))
        field = model.model_fields.get(str(key))
        if field is None:
            yield here
            continue
        kind, inner = _shape(field.annotation)
        if inner is None:
            continue
        if kind == "model":
            yield from unknown_keys(inner, value, here)
        elif kind == "mapping" and isinstance(value, Mapping):
            for name, item in value.items():
                yield from unknown_keys(inner, item, (*here, str(name)))
        elif kind == "sequence" and isinstance(value, list | tuple):
            for index, item in enumerate(value):
                yield from unknown_keys(inner, item, (*here, str(index)))


def _fields_at(root: type[BaseModel], parents: Path_) -> list[str]:
    """The keys the model at ``parents`` (a path :func:`unknown_keys` walked) defines."""
    model: type[BaseModel] | None = root
    i = 0
    while model is not None and i < len(parents):
        field = model.model_fields.get(parents[i])
        if field is None:
            return []
        kind, model = _shape(field.annotation)
        i += 1 if kind == "model" else 2  # a mapping's or a sequence's key is skipped
    return list(model.model_fields) if model is not None and i == len(parents) else []


def leaf_paths(root: type[BaseModel], typed: Path_ = (), prefix: Path_ = ()) -> Iterator[Path_]:
    """Every setting below ``root``; under ``models.<name>`` only the name ``typed`` uses."""
    for name, field in root.model_fields.items():
        here = (*prefix, name)
        kind, inner = _shape(field.annotation)
        if kind == "model" and inner is not None:
            yield from leaf_paths(inner, typed, here)
        elif kind == "mapping" and inner is not None:
            if len(typed) > len(here) and typed[: len(here)] == here:
                yield from leaf_paths(inner, typed, (*here, typed[len(here)]))
        else:
            yield here


def _norm(parts: Path_) -> str:
    return "".join(parts).replace("_", "").lower()


def _score(typed: Path_, known: Path_) -> float:
    """How close a known setting is: the whole path, or (a little less) its last name."""
    def ratio(a: str, b: str) -> float:
        return difflib.SequenceMatcher(None, a, b).ratio()
    return max(ratio(_norm(typed), _norm(known)), 0.9 * ratio(_norm(typed[-1:]), _norm(known[-1:])))


def closest_setting(root: type[BaseModel], typed: Path_, *, siblings: bool = True) -> Path_ | None:
    """The known setting ``typed`` most likely meant, or None when none is close.

    With ``siblings``, a key of the same section comes first (``kafak`` → ``kafka``);
    then any setting, anywhere, by its whole path or its last name (``feature_repo`` →
    ``feast.repo``, ``otel_file`` → ``observability.otel_file``).
    """
    *parents, key = typed
    if siblings:
        near = difflib.get_close_matches(key, _fields_at(root, tuple(parents)), n=1, cutoff=CUTOFF)
        if near:
            return (*parents, near[0])
    scored = [(_score(typed, known), known) for known in leaf_paths(root, typed)]
    best = max(scored, key=lambda pair: pair[0], default=None)
    return best[1] if best is not None and best[0] >= CUTOFF else None


def env_name(path: Path_, prefix: str = "DRIFTLOOP_") -> str:
    """The environment variable of a settings path, e.g. ``DRIFTLOOP_FEAST__REPO``."""
    return prefix + "__".join(part.upper() for part in path)


def file_problems(root: type[BaseModel], data: Any, source: str) -> list[str]:
    """One line per unknown key of a settings file's ``data``."""
    problems = []
    for typed in unknown_keys(root, data):
        near = closest_setting(root, typed)
        hint = f" (did you mean {'.'.join(near)!r}?)" if near else ""
        problems.append(f"unknown setting {'.'.join(typed)!r} in {source}{hint}")
    return problems


def variable_path(root: type[BaseModel], name: str, prefix: str = "DRIFTLOOP_"
                  ) -> tuple[Path_, bool]:
    """The settings path ``name`` sets and whether that is a whole section (a JSON value).

    Raises :class:`UnknownSettingError` when ``name`` sets nothing.
    """
    parts = tuple(name[len(prefix):].lower().split("__"))
    model: type[BaseModel] | None = root
    i = 0
    while i < len(parts):
        field = model.model_fields.get(parts[i]) if model is not None else None
        if field is None or not parts[i]:
            break
        kind, inner = _shape(field.annotation)
        last = i == len(parts) - 1
        if kind == "leaf" or inner is None:
            if last or typing.get_origin(field.annotation) in (dict, Mapping):
                return parts, False  # a plain dict takes any key below it
            break  # a value has no sub-settings
        if kind == "model":
            if last:
                return parts, True
            model, i = inner, i + 1
        else:  # a mapping (or sequence): the next part is the user's key (or an index)
            if i + 1 >= len(parts) - 1:
                return parts, True
            model, i = inner, i + 2
    near = closest_setting(root, parts, siblings=False)
    hint = f" (did you mean {env_name(near, prefix)}?)" if near else ""
    raise UnknownSettingError(
        f"unknown setting {'.'.join(parts)!r} in environment variable {name}{hint}")


def environment_problems(root: type[BaseModel], env: Mapping[str, str], prefix: str,
                         not_settings: Mapping[str, str]) -> list[str]:
    """One line per ``prefix*`` variable of ``env`` that names no setting.

    ``not_settings`` are the prefixed names that other readers own. A variable that sets
    a whole section holds JSON, whose keys are checked too.
    """
    problems = []
    for name in sorted(env):
        if not name.upper().startswith(prefix) or name.upper() in not_settings:
            continue
        try:
            path, section = variable_path(root, name, prefix)
        except UnknownSettingError as exc:
            problems.append(str(exc))
            continue
        if section:
            problems += _json_problems(root, path, env[name], name)
    return problems


def _json_problems(root: type[BaseModel], path: Path_, text: str, name: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        return []  # not JSON: validation says what is wrong with the value
    nested: Any = value
    for part in reversed(path):
        nested = {part: nested}
    return file_problems(root, nested, f"environment variable {name}")
