"""The model registry on S3 (a real loopback S3 server): same guarantees as on disk.

S3 has no rename, so aliases are logs of write-once entries created with a
conditional PUT (services/registry/alias_log.py). These tests run the registry
against ``weed mini`` through s3fs, with writers in separate processes.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections import Counter
from itertools import pairwise

import pytest
import torch
from workers.alias_race import race

from services.registry.manifest import Lineage
from services.registry.store import (
    AliasConflictError,
    ArtifactIntegrityError,
    ModelRegistry,
    VersionNotFoundError,
)

pytestmark = pytest.mark.integration


def _register(registry: ModelRegistry, request_id: str | None, scale: float = 1.0) -> int:
    return registry.register(
        "m",
        state_dict={"w": torch.full((3,), scale)},
        preprocessing={"numeric": ["x"], "scale": scale},
        model_meta={"kind": "toy"},
        lineage=Lineage(training_snapshot_id=f"snap-{request_id}", request_id=request_id,
                        reason="covariate"),
        hyperparameters={}, metrics={"val_loss": 0.1}, seeds={"seed": 0},
    ).version


def test_versions_aliases_and_integrity_on_s3(s3_options: dict, s3_prefix: str) -> None:
    registry = ModelRegistry(s3_prefix, storage_options=s3_options)
    v1 = _register(registry, "r1", 1.0)
    v2 = _register(registry, "r2", 2.0)
    assert (v1, v2) == (1, 2)
    assert _register(registry, "r1", 9.0) == 1  # a redelivered request: no new version
    assert registry.list_versions("m") == [1, 2]
    assert torch.equal(registry.load("m", 2).state_dict["w"], torch.full((3,), 2.0))

    registry.set_alias("m", "champion", 1, expected=None)
    with pytest.raises(AliasConflictError):
        registry.set_alias("m", "champion", 2, expected=None)
    registry.set_alias("m", "champion", 2, expected=1)
    assert registry.alias_record("m", "champion")["previous"] == 1
    registry.set_alias("m", "candidate-2", 2, expected=None)
    registry.delete_alias("m", "candidate-2", expected=2)
    assert registry.aliases("m") == {"champion": 2}
    registry.set_alias("m", "candidate-2", 2, expected=None)  # a deleted alias can return
    assert registry.aliases("m") == {"champion": 2, "candidate-2": 2}

    # A second client (another machine) sees every change at once: no stale listing.
    other = ModelRegistry(s3_prefix, storage_options=s3_options)
    assert other.get_alias("m", "champion") == 2
    other.set_alias("m", "champion", 1, expected=2)
    assert registry.get_alias("m", "champion") == 1
    assert registry.resolve("m", "champion") == 1

    # Tampered weights are refused before anything is deserialised.
    registry.fs.pipe_file(f"{registry._version_dir('m', 2)}/weights.pt", b"not torch")
    with pytest.raises(ArtifactIntegrityError):
        registry.load("m", 2)
    with pytest.raises(VersionNotFoundError):
        registry.load("m", 7)


def test_rollbacks_on_s3_go_back_along_the_history_never_forward(
    s3_options: dict, s3_prefix: str
) -> None:
    """The alias log keeps the champion's history: two rollbacks go v3 -> v2 -> v1."""
    registry = ModelRegistry(s3_prefix, storage_options=s3_options)
    for i in (1, 2, 3):
        _register(registry, f"h{i}", float(i))
    registry.set_alias("m", "champion", 1, expected=None)
    registry.set_alias("m", "champion", 2, expected=1)
    registry.set_alias("m", "champion", 3, expected=2)
    assert registry.alias_record("m", "champion")["history"] == [1, 2]
    registry.set_alias("m", "champion", 2, expected=3, back=True)
    assert registry.alias_record("m", "champion")["history"] == [1]
    registry.set_alias("m", "champion", 1, expected=2, back=True)
    record = ModelRegistry(s3_prefix, storage_options=s3_options).alias_record("m", "champion")
    assert (record["version"], record["history"]) == (1, [])


def test_concurrent_registrations_of_one_request_yield_one_version(
    s3_options: dict, s3_prefix: str
) -> None:
    registry = ModelRegistry(s3_prefix, storage_options=s3_options)
    results: list[int] = []
    barrier = threading.Barrier(4)

    def register(i: int) -> None:
        barrier.wait()
        results.append(_register(registry, "same-request" if i < 2 else f"other-{i}"))

    threads = [threading.Thread(target=register, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    same = registry.find_by_request_id("m", "same-request")
    assert same is not None
    assert sorted(results).count(same) == 2  # both callers of the request got one version
    assert len(registry.list_versions("m")) == 3  # one per distinct request id
    assert len(set(results)) == 3


def test_concurrent_alias_writers_in_separate_processes(
    s3_options: dict, s3_prefix: str
) -> None:
    """Four processes race to move ``champion`` from the value each just read, round after
    round. Whatever the interleaving, the successful writes form one chain: the alias's
    log, read from S3, holds exactly the winners' writes, each taking over from the one
    before (no two writers succeed from the same value, no update is lost)."""
    options = s3_options
    registry = ModelRegistry(s3_prefix, storage_options=options)
    versions = [_register(registry, f"r{i}", float(i)) for i in range(1, 5)]
    rounds = 6
    first = time.time() + 4.0  # the processes are started (imports) before the first round
    starts = [first + 1.0 * r for r in range(rounds)]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=race, args=(s3_prefix, options, v, starts, queue))
             for v in versions]
    for p in procs:
        p.start()
    outcomes = [queue.get(timeout=60) for _ in range(rounds * len(procs))]
    for p in procs:
        p.join(30)
    wins = [(version, seen) for _r, version, result, seen in outcomes if result == "won"]
    losses = [o for o in outcomes if o[2] == "lost"]
    assert losses, "no round was contended: the race did not happen"
    assert wins

    # The log, read straight from S3: one entry per successful write, chained.
    log_dir = f"{registry._model_dir('m')}/aliases/champion"
    entries = sorted(registry.fs.ls(log_dir, detail=False))
    records = [json.loads(registry.fs.cat_file(e)) for e in entries]
    assert [r["seq"] for r in records] == list(range(1, len(wins) + 1)), outcomes
    assert Counter((r["version"], r["previous"]) for r in records) == Counter(wins), outcomes
    for before, after in pairwise(records):
        assert after["previous"] == before["version"], records
    assert records[0]["previous"] is None
    assert registry.get_alias("m", "champion") == records[-1]["version"]
