"""Registry manifests: lineage, code version, file hashes, and manifest diffs."""

from __future__ import annotations

import functools
import subprocess
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a version comes from.

    ``training_snapshot_id`` names the data this version was trained on; once the
    version is promoted it becomes the drift monitor's reference.
    """

    training_snapshot_id: str
    parent_version: int | None = None
    parent_snapshot_id: str | None = None
    request_id: str | None = None
    reason: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (datetimes as ISO 8601)."""
        out = asdict(self)
        for key in ("window_start", "window_end"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


@functools.cache
def code_version() -> dict[str, str | None]:
    """The package version and, when run from a git checkout, the commit sha."""
    try:
        version: str | None = metadata.version("driftloop")
    except metadata.PackageNotFoundError:
        version = None
    sha = None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if out.returncode == 0:
            sha = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {"package": "driftloop", "version": version, "git_sha": sha}


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": leaf}`` (lists are leaves)."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def diff_manifests(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ: ``{key: (value in a, value in b)}`` (None if absent)."""
    fa, fb = flatten(a), flatten(b)
    keys = sorted(fa.keys() | fb.keys())
    return {k: (fa.get(k), fb.get(k)) for k in keys if fa.get(k) != fb.get(k)}
