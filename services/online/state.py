"""Snapshots of the online learner with the Kafka offsets they cover, written atomically.

What is saved: the whole :class:`~services.online.learner.OnlineLearner` (river pipeline,
drift detector, rolling metrics, counts), or an :class:`OnlineState` (the service's
learners with its pending feature/label join, retrain-trigger states and recent event
times per model), and, beside it, the offsets it covers: for each
``(topic, partition)`` the *next* offset to consume, i.e. every record before it has been
learned. On restart the service restores the learner and seeks to those offsets, so
learning resumes exactly where the snapshot was taken (records after it are re-learned
once: at-least-once, as everywhere in driftloop). Consumer-group commits should follow a
snapshot, never precede it.

Layout in ``directory`` (one per model; the service places it under the registry root)::

    0000000042.pkl    pickled learner (the payload)
    0000000042.json   manifest: format, seq, payload sha256 and size, offsets, counts,
                      river version, created_at, optional HMAC

Writes are atomic: temporary file in the same directory, ``fsync``, ``os.replace``,
``fsync`` of the directory; the payload first, the manifest last (the manifest is the
commit point: a crash in between leaves an orphan payload that is never read). The newest
``keep`` snapshots are kept.

Trust boundary. River models are plain Python objects, so persisting them needs pickle,
and unpickling runs code chosen by whoever wrote the bytes. Rules:

* Nothing that came over the network is ever unpickled: snapshots are only read from the
  local directory this service writes, never from Kafka, the registry's remote store or
  an HTTP source. The offsets are JSON and are read without unpickling anything.
* Before unpickling, the payload's size and sha256 must match the manifest: this catches
  truncation, corruption and a payload swapped without its manifest.
* The sha256 alone does not stop someone who can write to the directory (they can rewrite
  both files). With a key file (32 random bytes, owner-only permissions, outside the
  snapshot directory), each manifest carries an HMAC-SHA256 over its canonical content,
  and a snapshot without a valid HMAC is refused. Then writing the directory is not
  enough to get code run; reading the key is also needed.
* A snapshot written by another river version is refused (pickles of river objects are
  not stable across versions); the service then starts a fresh learner.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import river

from services.files import fsync_dir, write_atomic
from services.online.champion_watch import ChampionWatch
from services.online.join import LabelJoin
from services.online.learner import OnlineLearner
from services.online.timeline import EventTimeline
from streams.settings import Settings

FORMAT = "driftloop.online-snapshot/1"
Offsets = dict[tuple[str, int], int]



def snapshot_dir(settings: Settings) -> Path:
    """Where snapshots live: under the registry root when it is local, else the state dir.

    Snapshots are unpickled, so they must stay on the local disk this service writes
    (see the trust boundary above).
    """
    parsed = urlparse(settings.registry_uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else settings.registry_uri) / "online"
    return settings.state_dir / "online"

@dataclass
class OnlineState:
    """What the online service restores: learners per model, pending joins, trigger
    states, the recent event times per model (where a change began, as a time) and the
    champion watches."""

    learners: dict[str, OnlineLearner]
    join: LabelJoin = field(default_factory=LabelJoin)
    triggers: dict[str, str] = field(default_factory=dict)  # RetrainTrigger.state_json()
    requests: dict[str, dict[int, str]] = field(default_factory=dict)  # version -> request
    timelines: dict[str, EventTimeline] = field(default_factory=dict)
    watches: dict[str, ChampionWatch] = field(default_factory=dict)

    def timeline(self, model: str) -> EventTimeline:
        """The model's event timeline (created on first use)."""
        found = self.timelines.get(model)
        if found is None:
            found = self.timelines[model] = EventTimeline()
        return found

    @property
    def learned(self) -> int:
        return sum(learner.learned for learner in self.learners.values())


Snapshot = OnlineLearner | OnlineState


class SnapshotError(RuntimeError):
    """A snapshot cannot be used (missing, incompatible, corrupt)."""


class TamperedSnapshot(SnapshotError):
    """A snapshot failed its sha256 or HMAC check; it was not unpickled."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A snapshot's manifest, read without touching the payload."""

    seq: int
    manifest_path: Path
    payload_path: Path
    sha256: str
    size: int
    offsets: Offsets
    learned: int
    created_at: str
    river_version: str
    signed: bool


def create_key_file(path: Path) -> Path:
    """Write a fresh 32-byte HMAC key readable only by its owner (refuses to overwrite)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
        f.flush()
        os.fsync(f.fileno())
    return path


def read_key_file(path: Path) -> bytes:
    """The HMAC key; refused if group or others may read or write it, or if too short."""
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SnapshotError(f"key file {path} must be accessible by its owner only")
    key = path.read_bytes()
    if len(key) < 16:
        raise SnapshotError(f"key file {path} holds fewer than 16 bytes")
    return key


class SnapshotStore:
    """Local, atomic, verified snapshots of one online learner."""

    def __init__(self, directory: Path | str, keep: int = 3, key_file: Path | None = None) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.directory = Path(directory)
        self.keep = keep
        self._key = read_key_file(key_file) if key_file is not None else None

    # ------------------------------------------------------------------ write
    def save(self, learner: Snapshot, offsets: Mapping[tuple[str, int], int]) -> SnapshotInfo:
        """Write a new snapshot (payload, then manifest), prune old ones, return its info."""
        self.directory.mkdir(parents=True, exist_ok=True)
        latest = self.list()
        seq = latest[0].seq + 1 if latest else 1
        payload = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
        payload_path = self.directory / f"{seq:010d}.pkl"
        manifest_path = self.directory / f"{seq:010d}.json"
        manifest = {
            "format": FORMAT,
            "seq": seq,
            "payload": payload_path.name,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "size": len(payload),
            "offsets": [
                {"topic": t, "partition": p, "offset": o} for (t, p), o in sorted(offsets.items())
            ],
            "learned": learner.learned,
            "model": (
                learner.spec.model
                if isinstance(learner, OnlineLearner)
                else ",".join(sorted(learner.learners))
            ),
            "river_version": river.__version__,
            "created_at": datetime.now(UTC).isoformat(),
        }
        if self._key is not None:
            manifest["hmac"] = self._sign(manifest)
        write_atomic(payload_path, payload)
        write_atomic(manifest_path, json.dumps(manifest, sort_keys=True).encode())
        self._prune()
        return self._info(manifest_path)

    # ------------------------------------------------------------------- read
    def list(self) -> list[SnapshotInfo]:
        """Readable manifests, newest first (payloads not read)."""
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.glob("[0-9]*.json"), reverse=True):
            try:
                out.append(self._info(path))
            except SnapshotError:
                continue
        return out

    def load(self, info: SnapshotInfo) -> tuple[Snapshot, Offsets]:
        """Verify (size, sha256, HMAC, river version), then unpickle the learner."""
        self._verify_manifest(info.manifest_path)
        if info.river_version != river.__version__:
            raise SnapshotError(
                f"snapshot {info.seq} written by river {info.river_version}, "
                f"running {river.__version__}"
            )
        try:
            payload = info.payload_path.read_bytes()
        except OSError as exc:
            raise SnapshotError(f"snapshot {info.seq}: payload unreadable: {exc}") from exc
        digest = hashlib.sha256(payload).hexdigest()
        if len(payload) != info.size or not hmac.compare_digest(digest, info.sha256):
            raise TamperedSnapshot(f"snapshot {info.seq}: payload does not match its sha256")
        learner = pickle.loads(payload)  # verified local bytes written by this service
        if not isinstance(learner, OnlineLearner | OnlineState):
            raise SnapshotError(f"snapshot {info.seq} holds neither a learner nor a state")
        return learner, dict(info.offsets)

    def load_latest(self) -> tuple[Snapshot, Offsets, list[str]] | None:
        """Newest snapshot that verifies, with the reasons older/newer ones were refused.

        Returns None when there is no snapshot (start fresh); raises ``SnapshotError``
        when there are some but none verifies. Refusals of newer snapshots are returned,
        not hidden: a tampered snapshot is something to alert on.
        """
        refused: list[str] = []
        if not self.directory.is_dir():
            return None
        for path in sorted(self.directory.glob("[0-9]*.json"), reverse=True):
            try:
                learner, offsets = self.load(self._info(path))
            except SnapshotError as exc:
                refused.append(str(exc))
                continue
            return learner, offsets, refused
        if refused:
            raise SnapshotError("no usable snapshot: " + "; ".join(refused))
        return None

    # ---------------------------------------------------------------- helpers
    def _sign(self, manifest: Mapping[str, object]) -> str:
        assert self._key is not None
        body = {k: v for k, v in manifest.items() if k != "hmac"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self._key, canonical, hashlib.sha256).hexdigest()

    def _read_manifest(self, path: Path) -> dict:
        try:
            manifest = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"{path.name}: unreadable manifest: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise SnapshotError(f"{path.name}: not a {FORMAT} manifest")
        return manifest

    def _verify_manifest(self, path: Path) -> dict:
        manifest = self._read_manifest(path)
        if self._key is not None:
            mac = manifest.get("hmac")
            if not isinstance(mac, str) or not hmac.compare_digest(mac, self._sign(manifest)):
                raise TamperedSnapshot(f"{path.name}: HMAC missing or wrong")
        return manifest

    def _info(self, path: Path) -> SnapshotInfo:
        m = self._read_manifest(path)
        try:
            payload = self.directory / m["payload"]
            if payload.parent != self.directory or not m["payload"].endswith(".pkl"):
                raise SnapshotError(f"{path.name}: payload outside the snapshot directory")
            return SnapshotInfo(
                seq=int(m["seq"]),
                manifest_path=path,
                payload_path=payload,
                sha256=str(m["sha256"]),
                size=int(m["size"]),
                offsets={(str(o["topic"]), int(o["partition"])): int(o["offset"])
                         for o in m["offsets"]},
                learned=int(m["learned"]),
                created_at=str(m["created_at"]),
                river_version=str(m["river_version"]),
                signed="hmac" in m,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"{path.name}: malformed manifest: {exc}") from exc

    def _prune(self) -> None:
        infos = sorted(self.directory.glob("[0-9]*.json"), reverse=True)
        for old in infos[self.keep :]:
            old.unlink(missing_ok=True)
            old.with_suffix(".pkl").unlink(missing_ok=True)
        oldest_kept = infos[: self.keep][-1].stem if infos else None
        for payload in self.directory.glob("[0-9]*.pkl"):
            if oldest_kept is not None and payload.stem < oldest_kept:
                payload.unlink(missing_ok=True)  # orphan from a crash between the two writes
        fsync_dir(self.directory)
