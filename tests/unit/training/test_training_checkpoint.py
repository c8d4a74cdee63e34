from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from services.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    run_dir_for,
    save_checkpoint,
    sha256_file,
)


def test_keeps_newest_three_and_verifies(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40, 50):
        info = save_checkpoint(tmp_path, {"step": step, "w": torch.ones(3) * step}, step, keep=3)
        assert info.step == step
    steps = [c.step for c in list_checkpoints(tmp_path)]
    assert steps == [30, 40, 50]
    assert not list(tmp_path.glob(".ckpt-*"))  # no temp files left behind
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and latest.step == 50
    assert load_checkpoint(latest)["w"][0] == 50


def test_corrupt_newest_falls_back_and_is_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, {"step": 1}, 1)
    newest = save_checkpoint(tmp_path, {"step": 2}, 2)
    data = newest.path.read_bytes()
    newest.path.write_bytes(data[: len(data) // 2])  # truncated by a crash / disk fault
    with pytest.raises(CheckpointError):
        load_checkpoint(newest)
    fallback = latest_checkpoint(tmp_path)
    assert fallback is not None and fallback.step == 1


def test_checkpoint_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"step": 1, "payload": Fraction(1, 3)}, evil)  # needs the full unpickler
    digest = sha256_file(evil)
    evil.rename(tmp_path / f"ckpt-00000001.{digest}.pt")
    info = latest_checkpoint(tmp_path)
    assert info is not None  # the hash matches, so only weights_only stands in the way
    with pytest.raises(CheckpointError, match="does not load"):
        load_checkpoint(info)


def test_rng_state_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    info = save_checkpoint(tmp_path, {"rng": capture_rng_state()}, 1)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(load_checkpoint(info)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_run_dir_is_stable_and_cannot_escape(tmp_path: Path) -> None:
    assert run_dir_for(tmp_path, "req-1") == tmp_path / "req-1"
    assert run_dir_for(tmp_path, "req-1") == run_dir_for(tmp_path, "req-1")
    for evil in ("../x", "a/b", "..", "/abs", "initial:m:s"):
        path = run_dir_for(tmp_path, evil)
        assert path.parent == tmp_path and "/" not in path.name and ".." not in path.name
