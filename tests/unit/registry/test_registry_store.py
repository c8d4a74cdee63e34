from __future__ import annotations

import json
import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from services.registry.store import (
    AliasConflictError,
    ArtifactIntegrityError,
    InvalidNameError,
    ModelRegistry,
    VersionNotFoundError,
)


def test_register_and_load_round_trip(
    registry: ModelRegistry, artifacts: dict, register: Any
) -> None:
    reg = register(registry, artifacts, "r1")
    assert reg.version == 1 and reg.created
    loaded = registry.load("m", 1, expected_manifest_sha256=reg.manifest_sha256)
    for key, tensor in artifacts["state_dict"].items():
        assert torch.equal(loaded.state_dict[key], tensor)
    assert loaded.preprocessing == artifacts["preprocessing"]
    assert registry.list_versions("m") == [1]


def test_manifest_records_lineage_and_hashes(
    registry: ModelRegistry, artifacts: dict, register: Any
) -> None:
    register(registry, artifacts, "r1")
    reg = register(registry, artifacts, "r2", parent=1)
    m = reg.manifest
    assert m.lineage.training_snapshot_id == "snap-r2"
    assert m.lineage.parent_snapshot_id == "snap-parent"
    assert m.lineage.parent_version == 1 and m.lineage.request_id == "r2"
    assert m.drift_reference_snapshot_id == "snap-r2"
    assert set(m.files) == {"weights.pt", "preprocessing.json"}
    assert all(len(f.sha256) == 64 for f in m.files.values())
    assert m.code["package"] == "driftloop" and m.seeds == {"seed": 0}
    # what a reader gets back from storage is the manifest that was written
    assert registry.manifest("m", 2) == m
    diff = registry.diff("m", 1, 2)
    assert diff["lineage.parent_version"] == (None, 1)
    assert "architecture.n_numeric" not in diff


def test_duplicate_request_id_yields_one_version(
    registry: ModelRegistry, artifacts: dict, register: Any
) -> None:
    first = register(registry, artifacts, "same")
    second = register(registry, artifacts, "same")
    assert second.version == first.version and not second.created
    assert registry.find_by_request_id("m", "same") == first.version
    assert registry.find_by_request_id("m", "other") is None
    assert registry.list_versions("m") == [1]


def test_concurrent_duplicate_requests_and_allocations(
    registry: ModelRegistry, artifacts: dict, register: Any
) -> None:
    results: list[Any] = []
    barrier = threading.Barrier(6)

    def work(request_id: str) -> None:
        barrier.wait()
        results.append(register(registry, artifacts, request_id))

    threads = [
        threading.Thread(target=work, args=(rid,)) for rid in ["dup", "dup", "dup", "a", "b", "c"]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dup = {r.version for r in results if r.manifest.lineage.request_id == "dup"}
    assert len(dup) == 1  # one version for the duplicated request
    assert len(registry.list_versions("m")) == 4  # dup + a + b + c, no version shared
    assert len({r.version for r in results}) == 4


def test_tampered_weights_are_refused(
    registry: ModelRegistry, artifacts: dict, register: Any
) -> None:
    register(registry, artifacts, "r1")
    path = f"{registry._version_dir('m', 1)}/weights.pt"
    data = bytearray(registry.fs.cat_file(path))
    data[-20] ^= 0xFF  # same size, different bytes
    registry.fs.pipe_file(path, bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        registry.load("m", 1)


def test_truncated_or_missing_file_is_refused(
    registry: ModelRegistry, artifacts: dict, register: Any
) -> None:
    register(registry, artifacts, "r1")
    vdir = registry._version_dir("m", 1)
    data = registry.fs.cat_file(f"{vdir}/weights.pt")
    registry.fs.pipe_file(f"{vdir}/weights.pt", data[: len(data) // 2])
    with pytest.raises(ArtifactIntegrityError, match="truncated"):
        registry.load("m", 1)
    register(registry, artifacts, "r2")
    registry.fs.rm(f"{registry._version_dir('m', 2)}/preprocessing.json")
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        registry.load("m", 2)


def test_manifest_checked_against_expected_sha(
    registry: ModelRegistry, artifacts: dict, register: Any
) -> None:
    reg = register(registry, artifacts, "r1")
    with pytest.raises(ArtifactIntegrityError, match="manifest"):
        registry.load("m", 1, expected_manifest_sha256="0" * 64)
    assert registry.load("m", 1, expected_manifest_sha256=reg.manifest_sha256).version == 1


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", "/abs", "", "a\\b", ".hidden", "x" * 65])
def test_names_cannot_escape_the_root(
    registry: ModelRegistry, artifacts: dict, register: Any, bad: str
) -> None:
    with pytest.raises(InvalidNameError):
        register(registry, artifacts, "r", model=bad)
    register(registry, artifacts, "ok")
    with pytest.raises(InvalidNameError):
        registry.set_alias("m", bad, 1, expected=None)
    with pytest.raises(InvalidNameError):
        registry.load(bad, 1)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_versions_are_positive_integers(registry: ModelRegistry, bad: Any) -> None:
    with pytest.raises(InvalidNameError):
        registry.uri("m", bad)


def test_alias_compare_and_set(registry: ModelRegistry, artifacts: dict, register: Any) -> None:
    register(registry, artifacts, "r1")
    register(registry, artifacts, "r2")
    registry.set_alias("m", "champion", 1, expected=None)
    with pytest.raises(AliasConflictError):
        registry.set_alias("m", "champion", 2, expected=None)
    registry.set_alias("m", "champion", 2, expected=1)
    assert registry.get_alias("m", "champion") == 2
    assert registry.alias_record("m", "champion")["previous"] == 1
    assert registry.load("m", "champion").version == 2
    assert registry.show("m", 2)["aliases"] == ["champion"]
    with pytest.raises(VersionNotFoundError):
        registry.set_alias("m", "candidate-9", 9, expected=None)
    registry.set_alias("m", "candidate-2", 2, expected=None)
    registry.delete_alias("m", "candidate-2", expected=2)
    assert registry.aliases("m") == {"champion": 2}


def test_alias_cas_two_threads_exactly_one_wins(
    registry: ModelRegistry, artifacts: dict, register: Any
) -> None:
    for rid in ("r1", "r2", "r3"):
        register(registry, artifacts, rid)
    for _round in range(5):
        current = registry.get_alias("m", "champion")
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def race(
            version: int,
            expected: int | None = current,
            barrier: threading.Barrier = barrier,
            outcomes: list[str] = outcomes,
        ) -> None:
            barrier.wait()
            try:
                registry.set_alias("m", "champion", version, expected=expected)
                outcomes.append(f"won {version}")
            except AliasConflictError:
                outcomes.append("lost")

        targets = [v for v in (1, 2, 3) if v != current][:2]  # both change the value
        threads = [threading.Thread(target=race, args=(v,)) for v in targets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes)[0] == "lost", (_round, current, outcomes)
        assert sum(o.startswith("won") for o in outcomes) == 1
        winner = int(next(o for o in outcomes if o.startswith("won")).split()[1])
        assert registry.get_alias("m", "champion") == winner


def _process_race(root: str, version: int, start_at: float, queue: Any) -> None:
    registry = ModelRegistry(root)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        registry.set_alias("m", "champion", version, expected=None)
        queue.put(version)
    except AliasConflictError:
        queue.put(0)


def test_alias_cas_two_processes_exactly_one_wins(
    tmp_path: Path, artifacts: dict, register: Any
) -> None:
    root = str(tmp_path / "registry")
    registry = ModelRegistry(root)
    for rid in ("r1", "r2"):
        register(registry, artifacts, rid)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.3
    procs = [ctx.Process(target=_process_race, args=(root, v, start_at, queue)) for v in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(20)
    results = sorted(queue.get(timeout=5) for _ in procs)
    assert results[0] == 0 and results[1] in (1, 2)
    assert registry.get_alias("m", "champion") == results[1]


def test_stale_alias_lock_is_broken(tmp_path: Path, artifacts: dict, register: Any) -> None:
    registry = ModelRegistry(str(tmp_path / "r"), lock_stale_s=0.1, lock_wait_s=2)
    register(registry, artifacts, "r1")
    lock = Path(registry._model_dir("m")) / "aliases" / "champion.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"token": "dead", "at": time.time() - 10}))
    registry.set_alias("m", "champion", 1, expected=None)
    assert not lock.exists()


def test_retention_keeps_aliased_and_newest(
    registry: ModelRegistry, artifacts: dict, register: Any
) -> None:
    for i in range(1, 7):
        register(registry, artifacts, f"r{i}")
    registry.set_alias("m", "champion", 1, expected=None)
    registry.set_alias("m", "champion", 2, expected=1)  # 1 stays: rollback target
    registry.set_alias("m", "candidate-3", 3, expected=None)
    deleted = registry.apply_retention("m", keep_last=2)
    assert deleted == [4]
    assert registry.list_versions("m") == [1, 2, 3, 5, 6]
    assert registry.find_by_request_id("m", "r4") is None
    reg = register(registry, artifacts, "r7")
    assert reg.version == 7  # numbers are never reused
    with pytest.raises(VersionNotFoundError):
        registry.load("m", 4)


def test_uncommitted_version_is_invisible(
    registry: ModelRegistry, artifacts: dict, register: Any
) -> None:
    register(registry, artifacts, "r1")
    partial = f"{registry._model_dir('m')}/versions/2"
    registry.fs.makedirs(partial, exist_ok=True)
    registry.fs.pipe_file(f"{partial}/weights.pt", b"partial")  # a writer died here
    assert registry.list_versions("m") == [1]
    with pytest.raises(VersionNotFoundError):
        registry.load("m", 2)
    assert register(registry, artifacts, "r2").version == 3


def _orphan_binding(registry: ModelRegistry, request_id: str, pid: int) -> None:
    """A binding of ``request_id`` to version 7, which never committed, written just now
    (a far-future time: its age never runs out) by process ``pid`` of this host."""
    import socket

    path = Path(registry._request_path("m", request_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"request_id": request_id, "version": 7,
                                "bound_at": "2999-01-01T00:00:00+00:00",
                                "host": socket.gethostname(), "pid": pid}))


@pytest.mark.timeout(30)
def test_binding_of_a_dead_writer_is_taken_over_at_once(
    tmp_path: Path, artifacts: dict, register: Any
) -> None:
    import subprocess

    exited = subprocess.Popen(["true"])
    exited.wait()
    registry = ModelRegistry(str(tmp_path / "r"), claim_timeout_s=3600)
    _orphan_binding(registry, "killed", exited.pid)  # without the liveness check: an hour
    reg = register(registry, artifacts, "killed")
    assert reg.created and reg.version != 7
    assert registry.find_by_request_id("m", "killed") == reg.version


def test_binding_of_a_live_writer_is_waited_for_until_the_timeout(
    tmp_path: Path, artifacts: dict, register: Any
) -> None:
    import os

    registry = ModelRegistry(str(tmp_path / "r"), claim_timeout_s=0.3)
    _orphan_binding(registry, "slow", os.getppid())  # alive: it might still commit
    started = time.monotonic()
    reg = register(registry, artifacts, "slow")
    assert reg.created and time.monotonic() - started >= 0.3
