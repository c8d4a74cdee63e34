"""Registry manifests: lineage, code version, file hashes, and manifest diffs.

A manifest is written as JSON (:meth:`Manifest.to_dict`) and read back as a typed
:class:`Manifest` with its :class:`Lineage` (:meth:`Manifest.from_dict`), so readers use
attributes instead of digging in dicts; a malformed manifest is a :class:`ManifestError`.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST_FORMAT = 1
_LINEAGE_TIMES = ("window_start", "window_end", "change_point")


class ManifestError(ValueError):
    """A manifest that lacks a required field or holds a value of the wrong type."""


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a version comes from.

    ``training_snapshot_id`` names the data this version was trained on (for a retrain:
    the fresh rows after the change point, not the replay mixture); once the version is
    promoted it becomes the drift monitor's reference. ``window_start``/``window_end``
    are the event-time range that snapshot was read from (``[start, end)``). A retrain
    also records its episode and attempt, the request's ``change_point``, and what it
    trained on: ``fresh_rows`` of the snapshot and ``replay_rows`` of the parent's
    (train and validation together), ``replay_share`` = replay / (fresh + replay).
    """

    training_snapshot_id: str
    parent_version: int | None = None
    parent_snapshot_id: str | None = None
    request_id: str | None = None
    reason: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    run_id: str | None = None
    episode_id: str | None = None
    attempt: int | None = None
    change_point: datetime | None = None
    fresh_rows: int | None = None
    replay_rows: int | None = None
    replay_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (datetimes as ISO 8601)."""
        out = asdict(self)
        for key in _LINEAGE_TIMES:
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lineage:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (newer writers)."""
        if not isinstance(data, Mapping) or not data.get("training_snapshot_id"):
            raise ManifestError("lineage lacks training_snapshot_id")
        try:
            known = {f.name for f in fields(cls)}
            values = {k: v for k, v in data.items() if k in known}
            for key in _LINEAGE_TIMES:
                if values.get(key) is not None:
                    values[key] = datetime.fromisoformat(str(values[key]))
            for key in ("parent_version", "attempt", "fresh_rows", "replay_rows"):
                if values.get(key) is not None:
                    values[key] = int(values[key])
            if values.get("replay_share") is not None:
                values["replay_share"] = float(values["replay_share"])
            for key in ("training_snapshot_id", "parent_snapshot_id", "request_id", "reason",
                        "run_id", "episode_id"):
                if values.get(key) is not None:
                    values[key] = str(values[key])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"malformed lineage: {exc}") from exc


@dataclass(frozen=True, slots=True)
class FileDigest:
    """Size and sha256 of one stored file."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """One committed registry version, as written in its ``manifest.json``."""

    model: str
    version: int
    created_at: datetime
    lineage: Lineage
    architecture: dict[str, Any]
    files: dict[str, FileDigest]
    drift_reference_snapshot_id: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    code: dict[str, str | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # What the version predicts (``services.model.task.Task.to_dict``); empty: registered
    # without a task (``ModelRegistry.register``'s is optional), i.e. the default, binary.
    task: dict[str, Any] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    @property
    def request_id(self) -> str | None:
        """The retrain request this version was trained for (None: trained by hand)."""
        return self.lineage.request_id

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of ``manifest.json``."""
        out: dict[str, Any] = {
            "format": self.format,
            "model": self.model,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "lineage": self.lineage.to_dict(),
            "drift_reference_snapshot_id": self.drift_reference_snapshot_id,
            "hyperparameters": self.hyperparameters,
            "architecture": self.architecture,
            "metrics": self.metrics,
            "seeds": self.seeds,
            "code": self.code,
            "files": {n: asdict(d) for n, d in self.files.items()},
        }
        if self.extra:
            out["extra"] = self.extra
        if self.task:
            out["task"] = self.task
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Read a manifest back; ManifestError when a required field is absent or malformed."""
        if not isinstance(data, Mapping):
            raise ManifestError("a manifest is a JSON object")
        if data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"unsupported manifest format {data.get('format')!r}")
        try:
            lineage = Lineage.from_dict(data["lineage"])
            files = {str(n): FileDigest(str(d["sha256"]), int(d["size"]))
                     for n, d in dict(data["files"]).items()}
            return cls(
                model=str(data["model"]),
                version=int(data["version"]),
                created_at=datetime.fromisoformat(str(data["created_at"])),
                lineage=lineage,
                architecture=dict(data["architecture"]),
                files=files,
                drift_reference_snapshot_id=str(
                    data.get("drift_reference_snapshot_id") or lineage.training_snapshot_id),
                hyperparameters=dict(data.get("hyperparameters") or {}),
                metrics=dict(data.get("metrics") or {}),
                seeds=dict(data.get("seeds") or {}),
                code=dict(data.get("code") or {}),
                extra=dict(data.get("extra") or {}),
                task=dict(data.get("task") or {}),
            )
        except ManifestError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"malformed manifest: {exc!r}") from exc


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
