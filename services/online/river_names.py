"""River classes named in the configuration: resolved only inside ``river``, checked by kind.

The online learner's estimator and drift detector are configured as dotted names
relative to the ``river`` package (``"tree.HoeffdingAdaptiveTreeClassifier"``) with
plain parameters. A name is imported only from a public module under ``river.`` and must
name a class of the expected kind, so a configuration can never import or run anything
else.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

_DOTTED = re.compile(r"^(?:[a-z][a-z0-9_]*\.)+[A-Z][A-Za-z0-9]*$")


class RiverNameError(ValueError):
    """A configured dotted name does not name an allowed river class."""


def check_dotted(dotted: str) -> str:
    """``dotted`` if it reads like ``module.Class`` with no private module (no import)."""
    if not isinstance(dotted, str) or not _DOTTED.match(dotted):
        raise RiverNameError(f"not a river class name like 'module.Class': {dotted!r}")
    module_name = dotted.rpartition(".")[0]
    if any(part.startswith("_") for part in module_name.split(".")):
        raise RiverNameError(f"private module in {dotted!r}")
    return dotted


def resolve_river_class(dotted: str, kind: type | tuple[type, ...]) -> type:
    """The class ``river.<dotted>``, checked to be a subclass of ``kind``.

    Only modules under ``river.`` are imported; private segments and anything that is not
    a class of the expected kind are refused.
    """
    module_name, _, cls_name = check_dotted(dotted).rpartition(".")
    try:
        module = importlib.import_module(f"river.{module_name}")
    except ImportError as exc:
        raise RiverNameError(f"no module river.{module_name}") from exc
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type) or not cls.__module__.startswith("river."):
        raise RiverNameError(f"river.{dotted} is not a river class")
    if not issubclass(cls, kind):
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise RiverNameError(f"river.{dotted} is not a {names}")
    return cls


def build_river_object(
    dotted: str, params: Mapping[str, Any], kind: type | tuple[type, ...]
) -> Any:
    """Instantiate ``river.<dotted>(**params)``.

    A parameter value ``{"river": "module.Class", "params": {...}}`` is built the same way
    (any river base object), so nested estimators and optimizers can be configured. A
    parameter the class does not take is a :class:`RiverNameError` naming it.
    """
    cls = resolve_river_class(dotted, kind)
    built = {k: _build_param(v) for k, v in params.items()}
    try:
        return cls(**built)
    except TypeError as exc:
        raise RiverNameError(f"river.{dotted}: {exc}") from exc


def _build_param(value: Any) -> Any:
    from river import base

    if isinstance(value, Mapping) and set(value) <= {"river", "params"} and "river" in value:
        return build_river_object(value["river"], value.get("params", {}), base.Base)
    if isinstance(value, list):
        return [_build_param(v) for v in value]
    return value
