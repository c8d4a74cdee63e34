"""Feast's import-time type instrumentation, skipped (pure, once per process).

Feast decorates its API with typeguard's ``@typechecked``. Since typeguard 4 (Feast
requires it) that decorator re-parses and recompiles the source of every decorated
function at import: measured 14 of the 16 s that ``driftloop data columns`` took, and the
same in every process that opens a Feast store (each service, each ``driftloop``
command that reads the offline store). typeguard documents the decorator as a no-op
under ``python -O``, "meant for selectively introducing type checking into a code base
where the checks aren't meant to be run in production"; this makes it the same no-op
for Feast without turning off Python's assertions. Feast's own arguments are built by
driftloop's typed code and covered by its tests.

It must run before Feast is first imported: ``services.features`` calls it on import,
and nothing in driftloop imports Feast elsewhere. (No setting turns it back on: the
configuration is read after imports, and the environment is read by it alone.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["skip_feast_type_instrumentation"]


def _no_instrumentation(target: Any = None, **_options: Any) -> Any:
    """``@typechecked`` and ``@typechecked(...)`` that return their target unchanged."""
    if target is None:
        return _identity
    return target


def _identity(target: Any) -> Any:
    return target


def skip_feast_type_instrumentation() -> bool:
    """Make ``typeguard.typechecked`` a no-op; True when it is one now. Too late (Feast
    already imported) changes nothing and says False."""
    if "feast" in sys.modules:
        return False
    try:
        import typeguard
    except ImportError:  # nothing to skip
        return True
    current: Callable[..., Any] = typeguard.typechecked
    if current is not _no_instrumentation:
        typeguard.typechecked = _no_instrumentation  # type: ignore[assignment]
    return True
