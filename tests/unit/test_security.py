"""Security properties that cut across packages.

- Kafka SASL/SSL settings reach the client configuration of consumers and producers
  (the settings' own pass-through and ``redacted()`` are tested in
  ``tests/unit/streams/test_settings.py``);
- a configured SASL password never appears in a running service's logs or stderr, nor
  in the ``driftloop`` CLI's output;
- model names, aliases and versions cannot leave the registry root: every read and
  write (register, set and delete an alias, load) refuses them and leaves the disk as it
  was (compared path by path before and after);
- registry artifacts are loaded only after their sha256 matched (tampered weights and
  manifests and preprocessing files are refused);
- nothing from the network is unpickled: no ``pickle.load(s)`` nor ``torch.load``
  without ``weights_only=True`` in ``services/`` and ``streams/``, except the online
  learner's local, verified snapshots (``services/online/state.py``, trust boundary
  documented there).

The HTML report's escaping of feature names and values is tested in
``tests/unit/report/test_render.py`` (``test_feature_names_are_escaped_everywhere``,
``test_values_from_events_and_manifests_are_escaped``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from services.model.preprocessing import FORMAT_VERSION
from services.model.tabular import TabularModel
from services.registry.manifest import Lineage
from services.registry.store import (
    ArtifactIntegrityError,
    InvalidNameError,
    ModelRegistry,
    VersionNotFoundError,
    validate_name,
)
from streams.broker import free_port
from streams.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = f"pw-{uuid.uuid4().hex}"
SASL = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_username": "svc", "sasl_password": PASSWORD}


def test_sasl_and_ssl_reach_consumer_and_producer_configs() -> None:
    s = load_settings(kafka={
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "svc", "sasl_password": PASSWORD, "ssl_ca_location": "/etc/ca.pem",
        "ssl_certificate_location": "/etc/c.pem", "ssl_key_location": "/etc/k.pem",
        "ssl_key_password": "key-" + PASSWORD,
    })
    for config in (s.kafka.consumer_config("g"), s.kafka.producer_config()):
        assert config["security.protocol"] == "SASL_SSL"
        assert config["sasl.mechanism"] == "SCRAM-SHA-512"
        assert (config["sasl.username"], config["sasl.password"]) == ("svc", PASSWORD)
        assert config["ssl.ca.location"] == "/etc/ca.pem"
        assert config["ssl.certificate.location"] == "/etc/c.pem"
        assert config["ssl.key.location"] == "/etc/k.pem"
        assert config["ssl.key.password"] == "key-" + PASSWORD
    assert PASSWORD not in repr(s) and PASSWORD not in str(s.kafka.redacted())


def test_a_running_service_never_logs_its_sasl_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A service pointed at a dead broker with a SASL password runs (and fails to connect)
    for a while at DEBUG level; the password is in none of its log records nor stderr."""
    from services.observability.setup import in_memory_telemetry
    from services.online.service import build

    settings = load_settings(
        kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}", **SASL,
               "extra": {"debug": "security,broker"}},
        state_dir=tmp_path / "state", registry_uri=str(tmp_path / "registry"),
        models={"m": {"online": {"spec": {"features": [{"name": "x"}]}}}},
    )
    with caplog.at_level(logging.DEBUG):
        service = build(settings, telemetry=in_memory_telemetry("security-test"))
        logging.getLogger("security-test").info("settings: %s", settings)
        started = time.monotonic()
        service.run(until=lambda: time.monotonic() - started > 1.5)
    out, err = capfd.readouterr()
    # Output only the product writes: its own loggers' records (not this test's line
    # above) and librdkafka's SASL debug lines, which its clients print only when the
    # product configured them with the mechanism (and so with the password).
    product = [r for r in caplog.records if r.name.split(".")[0] in ("services", "streams")]
    assert product, "the service logged nothing of its own to check"
    assert re.search(r"\|SASL\|driftloop[^|]*\|.*SASL mechanism PLAIN", err), (
        "no librdkafka SASL debug output: the service's clients never got the SASL settings"
    )
    for text in (caplog.text, out, err):
        assert PASSWORD not in text


def test_cli_output_never_shows_the_sasl_password(tmp_path: Path) -> None:
    env = {**os.environ, "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
           "DRIFTLOOP_STATE_DIR": str(tmp_path), **{
               f"DRIFTLOOP_KAFKA__{k.upper()}": v for k, v in SASL.items()}}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "-v", "topics", "list"],
        capture_output=True, text=True, env=env, timeout=60, cwd=ROOT,
    )
    assert result.stdout or result.stderr
    assert PASSWORD not in result.stdout and PASSWORD not in result.stderr


BAD_NAMES = [
    "..", "../x", "a/../b", "a/b", "/etc", "", ".hidden", "a" * 65, "x\x00y", "a\\b", "~root",
    "a..b", " spaced", "fraud\n", "fraud\r", "a\tb", "x\x1b[31m", "\u202eevil", "ｆraud",
    "../outside/victim", "..\\outside", "a/", "-dash", "_under",
]
"""Names every registry entry point must refuse (a trailing newline included: a regex
``$`` matches just before it)."""


def _tree(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every path under ``root``: its kind and its content (files), to compare before/after."""
    out: dict[str, tuple[str, bytes]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        out[rel] = ("file", path.read_bytes()) if path.is_file() else ("dir", b"")
    return out


def _changed(before: dict[str, tuple[str, bytes]], after: dict[str, tuple[str, bytes]],
             ) -> list[str]:
    """Paths created, removed or rewritten between two :func:`_tree` snapshots."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


@pytest.fixture
def victim_root(tmp_path: Path) -> Path:
    """A registry beside a directory it must never touch (``outside/victim``)."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "victim").write_text("keep me\n")
    return tmp_path


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_cannot_escape_the_registry_root(name: str, victim_root: Path) -> None:
    registry = ModelRegistry(str(victim_root / "registry"))
    good = _register(registry)
    registry.set_alias("toy", "champion", good, expected=None)
    before = _tree(victim_root)
    with pytest.raises(InvalidNameError):
        validate_name(name)
    with pytest.raises(InvalidNameError):
        registry.list_versions(name)
    with pytest.raises(InvalidNameError):
        registry.get_alias(name, "champion")
    with pytest.raises(InvalidNameError):
        registry.get_alias("toy", name)
    with pytest.raises(InvalidNameError):
        _register(registry, model=name)
    with pytest.raises(InvalidNameError):
        registry.set_alias("toy", name, good, expected=None)
    with pytest.raises(InvalidNameError):
        registry.set_alias(name, "champion", good, expected=None)
    with pytest.raises(InvalidNameError):
        registry.delete_alias("toy", name, expected=good)
    assert _changed(before, _tree(victim_root)) == [], "a refused write touched the disk"
    assert registry.get_alias("toy", "champion") == good
    assert registry.list_versions("toy") == [good]


@pytest.mark.parametrize(("ref", "error"), [
    ("../1", InvalidNameError), ("1/../2", InvalidNameError), ("0", InvalidNameError),
    ("-1", InvalidNameError), ("champion/../x", InvalidNameError), ("1\n", InvalidNameError),
    ("1.5", VersionNotFoundError), ("true", VersionNotFoundError), ("2", VersionNotFoundError),
    (0, InvalidNameError), (-3, InvalidNameError), (True, InvalidNameError),
])
def test_versions_cannot_escape_the_model_directory(ref: object, error: type[Exception],
                                                    victim_root: Path) -> None:
    registry = ModelRegistry(str(victim_root / "registry"))
    good = _register(registry)
    registry.set_alias("toy", "champion", good, expected=None)
    before = _tree(victim_root)
    with pytest.raises(error):
        registry.load("toy", ref)  # type: ignore[arg-type]
    with pytest.raises(error):
        registry.set_alias("toy", "champion", ref, expected=good)  # type: ignore[arg-type]
    assert _changed(before, _tree(victim_root)) == []
    assert registry.get_alias("toy", "champion") == good


def _register(registry: ModelRegistry, model: str = "toy") -> int:
    module = TabularModel(2, [], [], [], 0.0)
    reg = registry.register(
        model, state_dict=module.state_dict(),
        preprocessing={"format": FORMAT_VERSION, "numeric": [{"name": "x", "mean": 0.0,
                       "std": 1.0}], "categorical": []},
        model_meta=module.meta, lineage=Lineage(training_snapshot_id="s"),
        hyperparameters={}, metrics={}, seeds={},
    )
    return reg.version


def _version_dir(root: Path, version: int) -> Path:
    return root / "registry" / "models" / "toy" / "versions" / str(version)


def test_tampered_weights_and_manifests_are_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(str(tmp_path / "registry"))
    version = _register(registry)
    good = registry.get("toy", version).manifest_sha256
    registry.load("toy", version, expected_manifest_sha256=good)
    weights = _version_dir(tmp_path, version) / "weights.pt"
    tampered = {k: v + 1 for k, v in torch.load(weights, weights_only=True).items()}
    torch.save(tampered, weights)  # a valid torch file: only the hash tells
    with pytest.raises(ArtifactIntegrityError, match=r"weights\.pt"):
        registry.load("toy", version)
    with pytest.raises(ArtifactIntegrityError, match="manifest sha256"):
        registry.load("toy", version, expected_manifest_sha256="0" * 64)


def _rewrite_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, sort_keys=True, indent=1))


def test_tampered_preprocessing_is_refused(tmp_path: Path) -> None:
    """Scaling statistics are as dangerous as weights: a shifted mean is refused by hash."""
    registry = ModelRegistry(str(tmp_path / "registry"))
    version = _register(registry)
    path = _version_dir(tmp_path, version) / "preprocessing.json"
    same_size = path.read_text().replace('"mean": 0.0', '"mean": 9.0')
    assert same_size != path.read_text() and len(same_size) == len(path.read_text())
    path.write_text(same_size)  # same size: only the sha256 tells
    with pytest.raises(ArtifactIntegrityError, match=r"preprocessing\.json sha256"):
        registry.load("toy", version)
    path.write_text(same_size + " ")
    with pytest.raises(ArtifactIntegrityError, match=r"preprocessing\.json has"):
        registry.load("toy", version)
    path.unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"preprocessing\.json is missing"):
        registry.load("toy", version)


@pytest.mark.parametrize("tamper", ["lineage", "file_hash", "drop_file", "not_json"])
def test_tampered_manifests_are_refused(tamper: str, tmp_path: Path) -> None:
    """A manifest rewritten consistently with tampered files passes the per-file hashes,
    so whoever holds the announced manifest sha256 (a candidate event) must be refused;
    a manifest that no longer lists a file, or is not JSON, is refused by anyone."""
    registry = ModelRegistry(str(tmp_path / "registry"))
    version = _register(registry)
    announced = registry.get("toy", version).manifest_sha256
    vdir = _version_dir(tmp_path, version)
    manifest = vdir / "manifest.json"
    if tamper == "lineage":
        _rewrite_json(manifest, lambda d: d["lineage"].update(parent_version=99))
    elif tamper == "file_hash":  # new preprocessing, and its hash forged to match
        prep = vdir / "preprocessing.json"
        prep.write_text(prep.read_text().replace('"std": 1.0', '"std": 0.001'))
        data = prep.read_bytes()
        _rewrite_json(manifest, lambda d: d["files"]["preprocessing.json"].update(
            sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
    elif tamper == "drop_file":
        _rewrite_json(manifest, lambda d: d["files"].pop("weights.pt"))
    else:
        manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(ArtifactIntegrityError):
        registry.load("toy", version, expected_manifest_sha256=announced)
    if tamper in ("drop_file", "not_json"):
        with pytest.raises(ArtifactIntegrityError):
            registry.load("toy", version)


UNSAFE = re.compile(r"\b(pickle|cPickle|dill|marshal)\.loads?\(|\btorch\.load\(|"
                    r"\byaml\.(unsafe_)?load\(")
ALLOWED_UNPICKLING = {"services/online/state.py"}  # local, sha256/HMAC-verified snapshots


def test_nothing_from_the_network_is_unpickled() -> None:
    offenders = []
    for package in ("services", "streams"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                match = UNSAFE.search(code)
                if not match or code.lstrip().startswith(('"', "'", "``")):
                    continue
                call = match.group(0)
                if call.startswith("torch.load(") and "weights_only=True" in code:
                    continue
                if call.startswith("yaml.load(") and "SafeLoader" in code:
                    continue
                if call.startswith("pickle.load") and rel in ALLOWED_UNPICKLING:
                    continue
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    state = (ROOT / "services/online/state.py").read_text()
    assert "Nothing that came over the network is ever unpickled" in state
