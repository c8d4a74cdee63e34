"""Manifests read back as typed lineage: the JSON written is the manifest read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.registry.manifest import FileDigest, Lineage, Manifest, ManifestError
from services.registry.store import ArtifactIntegrityError, ModelRegistry

LINEAGE = Lineage(
    training_snapshot_id="snap-2", parent_version=1, parent_snapshot_id="snap-1",
    request_id="req-9", reason="concept",
    window_start=datetime(2026, 3, 1, 12, tzinfo=UTC),
    window_end=datetime(2026, 3, 1, 13, tzinfo=UTC), run_id="run-1",
)


def _manifest() -> Manifest:
    return Manifest(
        model="m", version=2, created_at=datetime(2026, 3, 2, tzinfo=UTC), lineage=LINEAGE,
        architecture={"format": 1, "hidden_sizes": [4]},
        files={"weights.pt": FileDigest("a" * 64, 10)},
        drift_reference_snapshot_id="snap-2", metrics={"val_loss": 0.25},
        extra={"fine_tuned": True},
    )


def test_json_round_trip_keeps_types() -> None:
    manifest = _manifest()
    back = Manifest.from_dict(json.loads(json.dumps(manifest.to_dict())))
    assert back == manifest
    assert isinstance(back.lineage.window_start, datetime)
    assert back.lineage.window_start == LINEAGE.window_start
    assert back.request_id == "req-9" and back.lineage.parent_version == 1


def test_a_manifest_without_optional_sections_reads_with_defaults() -> None:
    old: dict[str, Any] = {
        "format": 1, "model": "m", "version": 1, "created_at": "2026-01-01T00:00:00+00:00",
        "lineage": {"training_snapshot_id": "s", "from_a_newer_writer": 1},
        "architecture": {}, "files": {},
    }
    manifest = Manifest.from_dict(old)
    assert manifest.lineage == Lineage(training_snapshot_id="s")
    assert manifest.drift_reference_snapshot_id == "s"
    assert manifest.metrics == {} and manifest.extra == {} and "extra" not in manifest.to_dict()


@pytest.mark.parametrize("broken", [
    {"format": 2}, {"lineage": {}}, {"version": "two"}, {"files": {"w": {"size": 1}}},
    {"created_at": "yesterday"},
])
def test_malformed_manifests_are_refused(broken: dict[str, Any]) -> None:
    data = {**_manifest().to_dict(), **broken}
    with pytest.raises(ManifestError):
        Manifest.from_dict(data)


def test_registry_refuses_a_manifest_it_cannot_read(tmp_path: Path) -> None:
    registry = ModelRegistry(str(tmp_path))
    path = tmp_path / "models" / "m" / "versions" / "1" / "manifest.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": 1, "model": "m"}))
    with pytest.raises(ArtifactIntegrityError, match="unreadable manifest"):
        registry.manifest("m", 1)
    with pytest.raises(ArtifactIntegrityError, match="unreadable manifest"):
        registry.load("m", 1)
