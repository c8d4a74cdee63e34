"""Online learner snapshots: round trip, offsets, atomic files, tampering refused."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
from river.datasets import synth

from services.featurespec import FeatureSpec, ModelSpec
from services.online.learner import OnlineLearner
from services.online.state import (
    SnapshotError,
    SnapshotStore,
    TamperedSnapshot,
    create_key_file,
)

SPEC = ModelSpec("sea", "id", (*(FeatureSpec(str(i), "numeric") for i in range(3)),
                               FeatureSpec("k", "categorical")))
OFFSETS = {("p.features", 0): 120, ("p.labels", 1): 77}


def _trained(n: int = 800) -> tuple[OnlineLearner, list[dict]]:
    learner = OnlineLearner(SPEC)
    xs = []
    for i, (x, y) in enumerate(itertools.islice(synth.SEA(noise=0.1, seed=5), n)):
        row = {str(k): v for k, v in x.items()} | {"k": "ab"[i % 2]}
        learner.learn_one(row, float(y))
        xs.append(row)
    return learner, xs


def test_round_trip_restores_identical_predictions_and_offsets(tmp_path: Path) -> None:
    learner, xs = _trained()
    store = SnapshotStore(tmp_path / "snap")
    info = store.save(learner, OFFSETS)
    assert info.seq == 1 and info.learned == 800 and info.offsets == OFFSETS
    restored, offsets, refused = store.load_latest()  # type: ignore[misc]
    assert offsets == OFFSETS and refused == []
    # equal up to float summation order: river's one-hot encoder keeps categories in sets
    assert [restored.predict_proba(x) for x in xs[:200]] == pytest.approx(
        [learner.predict_proba(x) for x in xs[:200]], rel=1e-12, abs=1e-15)
    assert restored.metrics() == learner.metrics()
    assert restored.detector.width == learner.detector.width
    # both keep learning identically
    for x in xs[:50]:
        assert restored.learn_one(x, 1.0).proba == pytest.approx(
            learner.learn_one(x, 1.0).proba, rel=1e-12, abs=1e-15)


def test_no_snapshot_means_start_fresh(tmp_path: Path) -> None:
    assert SnapshotStore(tmp_path / "none").load_latest() is None


def test_keeps_newest_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    learner, _ = _trained(100)
    store = SnapshotStore(tmp_path, keep=2)
    for i in range(4):
        store.save(learner, {("t", 0): i})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "0000000003.json", "0000000003.pkl", "0000000004.json", "0000000004.pkl"]
    assert [i.seq for i in store.list()] == [4, 3]
    assert store.load_latest()[1] == {("t", 0): 3}  # type: ignore[index]


def test_tampered_payload_is_refused_and_older_one_used(tmp_path: Path) -> None:
    learner, _ = _trained(100)
    store = SnapshotStore(tmp_path)
    store.save(learner, {("t", 0): 1})
    newest = store.save(learner, {("t", 0): 2})
    data = bytearray(newest.payload_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.payload_path.write_bytes(bytes(data))
    with pytest.raises(TamperedSnapshot):
        store.load(newest)
    _, offsets, refused = store.load_latest()  # type: ignore[misc]
    assert offsets == {("t", 0): 1} and len(refused) == 1 and "sha256" in refused[0]


def test_payload_swapped_with_rewritten_sha_needs_the_hmac(tmp_path: Path) -> None:
    key = create_key_file(tmp_path / "key")
    assert (os.stat(key).st_mode & 0o777) == 0o600
    learner, _ = _trained(100)
    signed = SnapshotStore(tmp_path / "s", key_file=key)
    info = signed.save(learner, OFFSETS)
    assert info.signed
    # an attacker who can write the directory rewrites the manifest's offsets/sha256
    manifest = json.loads(info.manifest_path.read_text())
    manifest["offsets"][0]["offset"] = 0
    info.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(TamperedSnapshot):
        signed.load(signed.list()[0])
    with pytest.raises(SnapshotError):
        signed.load_latest()
    # without the key the sha256 check alone would have accepted it
    unsigned_view = SnapshotStore(tmp_path / "s")
    assert unsigned_view.load(unsigned_view.list()[0])[1][("p.features", 0)] == 0


def test_unsigned_snapshot_refused_when_a_key_is_configured(tmp_path: Path) -> None:
    learner, _ = _trained(100)
    SnapshotStore(tmp_path / "s").save(learner, OFFSETS)
    key = create_key_file(tmp_path / "key")
    with pytest.raises(SnapshotError, match="HMAC"):
        SnapshotStore(tmp_path / "s", key_file=key).load_latest()


def test_key_file_readable_by_others_refused(tmp_path: Path) -> None:
    key = create_key_file(tmp_path / "key")
    key.chmod(0o644)
    with pytest.raises(SnapshotError):
        SnapshotStore(tmp_path / "s", key_file=key)


def test_manifest_pointing_outside_the_directory_is_ignored(tmp_path: Path) -> None:
    learner, _ = _trained(100)
    store = SnapshotStore(tmp_path / "s")
    info = store.save(learner, OFFSETS)
    manifest = json.loads(info.manifest_path.read_text())
    manifest["payload"] = "../evil.pkl"
    info.manifest_path.write_text(json.dumps(manifest))
    assert store.list() == []
    with pytest.raises(SnapshotError, match="outside"):
        store.load_latest()


def test_other_river_version_refused(tmp_path: Path) -> None:
    learner, _ = _trained(100)
    store = SnapshotStore(tmp_path)
    info = store.save(learner, OFFSETS)
    manifest = json.loads(info.manifest_path.read_text())
    manifest["river_version"] = "0.0.1"
    info.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(SnapshotError, match="river"):
        store.load(store.list()[0])
