"""Crash-safe training checkpoints in a run directory.

A checkpoint is one ``torch.save`` file named ``ckpt-<step>.<sha256>.pt``: written to a
temporary file, fsynced, renamed into place (the rename is the commit), the directory
fsynced, then read back and verified. The sha256 in the name lets a reader verify the
file without a sidecar; ``torch.load(weights_only=True)`` means nothing is unpickled, so
every value inside is a tensor, number, string, list or dict (RNG states included).

A run directory is keyed by the retrain request id (``run_dir_for``), so a redelivered
request finds its own checkpoints and resumes instead of starting over.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.files import fsync_dir

_NAME = re.compile(r"^ckpt-(\d{8,})\.([0-9a-f]{64})\.pt$")
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or failed verification when read."""


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """Where a checkpoint lies and what it claims to hold."""

    path: Path
    step: int
    sha256: str


def run_dir_for(root: str | Path, request_id: str) -> Path:
    """The run directory of ``request_id`` under ``root`` (stable across redeliveries).

    Ids that are not plain file names are hashed, so no id can escape ``root``.
    """
    if _SAFE.match(request_id) and ".." not in request_id:
        name = request_id
    else:
        name = "req-" + hashlib.sha256(request_id.encode()).hexdigest()[:32]
    return Path(root) / name


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_checkpoints(run_dir: str | Path) -> list[CheckpointInfo]:
    """Committed checkpoints in ``run_dir`` by step, oldest first (unverified)."""
    root = Path(run_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(CheckpointInfo(entry, int(match.group(1)), match.group(2)))
    return sorted(found, key=lambda c: (c.step, c.path.stat().st_mtime_ns))


def save_checkpoint(
    run_dir: str | Path, state: dict[str, Any], step: int, keep: int = 3
) -> CheckpointInfo:
    """Write ``state`` atomically, verify it, and prune all but the newest ``keep``."""
    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=root)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        digest = sha256_file(tmp)
        final = root / f"ckpt-{step:08d}.{digest}.pt"
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(root)
    info = CheckpointInfo(final, step, digest)
    load_checkpoint(info)  # read back: the bytes on disk must hash and load
    for old in list_checkpoints(root)[:-keep]:
        if old.path != final:
            old.path.unlink(missing_ok=True)
    return info


def load_checkpoint(info: CheckpointInfo, map_location: str | torch.device = "cpu") -> dict:
    """Verify the sha256 in the name, then ``torch.load(weights_only=True)``."""
    try:
        actual = sha256_file(info.path)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {info.path}: {exc}") from exc
    if actual != info.sha256:
        raise CheckpointError(f"checkpoint {info.path} is corrupt (sha256 {actual})")
    try:
        state = torch.load(info.path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {info.path} does not load: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {info.path} holds {type(state).__name__}, not a dict")
    return state


def latest_checkpoint(run_dir: str | Path) -> CheckpointInfo | None:
    """The newest checkpoint whose bytes match its sha256 (older ones if the newest is bad)."""
    for info in reversed(list_checkpoints(run_dir)):
        try:
            if sha256_file(info.path) == info.sha256:
                return info
        except OSError:
            continue
    return None


# -- RNG state as plain tensors/lists (weights_only-loadable) ------------------------------
def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) generator states without pickled objects."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state(
        (
            nps["kind"],
            nps["keys"].numpy().astype(np.uint32),
            nps["pos"],
            nps["has_gauss"],
            nps["gauss"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
