"""The model registry: immutable versions, compare-and-set aliases, verified loading.

Layout under the root (any fsspec URL; a plain path is a local directory)::

    models/<model>/claims/<n>                 version number n is taken (exclusive create)
    models/<model>/versions/<n>/weights.pt        state dict (tensors only)
    models/<model>/versions/<n>/preprocessing.json
    models/<model>/versions/<n>/manifest.json     written last: its presence commits n
    models/<model>/requests/<sha256(request id)>.json   request id -> version (exclusive)
    models/<model>/aliases/<alias>.json       {"version", "previous", "history", "updated_at"}
    models/<model>/aliases/<alias>.lock       held while an alias changes

Why it is safe with concurrent writers:

- A version number is taken by exclusively creating its claim file, so two writers
  cannot both create v3; a number is never reused, even if its writer died.
- A version exists only once its manifest is written (after the other files); readers
  ignore uncommitted directories.
- A request id is bound to one version by exclusively creating its request file
  *before* the manifest is committed; the loser of a race discards its uncommitted
  files and returns the winner's version, so a redelivered request yields one version.
  A binding whose version never commits (its writer died) is taken over at once when
  the writer was a process on this host that has exited (``kill -9`` included), else
  after ``claim_timeout_s``. Its version number stays unused: numbers may have gaps.
- An alias changes by compare-and-set. On a local directory: under an exclusive lock
  file, the new value written to a temporary file and renamed over the old one, so
  readers see the old or the new value, never a partial one; a lock older than
  ``lock_stale_s`` is broken. On object storage (S3, no rename): an append-only log of
  write-once entries, the next one created only if absent (conditional ``PUT``), see
  :mod:`services.registry.alias_log`; no lock, nothing to break.
- Object stores are read without fsspec's listing cache (another writer's objects must
  be seen at once), and a file is written with one ``PUT`` (atomic for readers).
  Credentials and endpoint come from ``storage_options`` or the standard ``AWS_*``
  variables (``AWS_ENDPOINT_URL`` for a non-AWS server).
- Loading verifies the size and sha256 of every file named in the manifest before
  ``torch.load(weights_only=True)``; optionally the manifest's own sha256 (the value a
  ``ModelCandidate`` event carries). A manifest altered together with its files can
  only be caught by that expected sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from services.files import fsync_dir, fsync_file
from services.files import write_atomic as write_local_atomic
from services.model.task import Task
from services.registry.alias_log import AliasLog
from services.registry.manifest import (
    FileDigest,
    Lineage,
    Manifest,
    ManifestError,
    code_version,
    diff_manifests,
)
from streams.broker import process_alive

if TYPE_CHECKING:  # torch loads only where weights are read or written
    import torch


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A whole name (always ``fullmatch``: ``$`` would also match before a trailing newline)."""
WEIGHTS = "weights.pt"
PREPROCESSING = "preprocessing.json"
MANIFEST = "manifest.json"
REQUIRED_FILES = (WEIGHTS, PREPROCESSING)


class RegistryError(RuntimeError):
    """Base class of registry failures."""


class InvalidNameError(RegistryError, ValueError):
    """A model, alias or version name that could escape the root or is malformed."""


class VersionNotFoundError(RegistryError, LookupError):
    """No committed version (or alias) of that name."""


class ArtifactIntegrityError(RegistryError):
    """A stored file does not match the manifest (tampered, truncated or missing)."""


class AliasConflictError(RegistryError):
    """Compare-and-set lost: the alias no longer has the expected value."""

    def __init__(self, model: str, alias: str, expected: int | None, actual: int | None) -> None:
        super().__init__(
            f"alias {model}/{alias} is {actual}, expected {expected}: someone changed it first"
        )
        self.expected = expected
        self.actual = actual


class AliasLockTimeoutError(RegistryError):
    """The alias lock could not be taken in time."""


def validate_name(name: str, what: str = "name") -> str:
    """Accept ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`` without ``..``; else InvalidNameError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidNameError(f"invalid {what} {name!r}")
    return name


def validate_version(version: Any) -> int:
    """Versions are integers >= 1."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidNameError(f"invalid version {version!r}")
    return version


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class RegisteredVersion:
    """A committed version; ``created`` is False when an earlier one was returned."""

    model: str
    version: int
    uri: str
    manifest_sha256: str
    manifest: Manifest
    created: bool


@dataclass(frozen=True)
class LoadedModel:
    """A verified version's contents: usable as ``init_from`` for fine-tuning, or built
    for scoring by :class:`services.model.scoring.Scorer`."""

    model: str
    version: int
    manifest: Manifest
    manifest_sha256: str
    state_dict: dict[str, torch.Tensor]
    preprocessing: dict[str, Any]

    @property
    def model_meta(self) -> dict[str, Any]:
        """Architecture description from the manifest."""
        return dict(self.manifest.architecture)

    @property
    def training_snapshot_id(self) -> str:
        """The snapshot this version was trained on (its drift reference)."""
        return self.manifest.lineage.training_snapshot_id

    @property
    def task(self) -> Task:
        """What this version predicts (binary for a version registered without a task)."""
        return Task.from_manifest(self.manifest.task)


class ModelRegistry:
    """Versions, aliases and lineage of models under ``root_uri`` (fsspec)."""

    def __init__(
        self,
        root_uri: str,
        *,
        lock_wait_s: float = 10.0,
        lock_stale_s: float = 60.0,
        claim_timeout_s: float = 60.0,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.root_uri = root_uri.rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(root_uri, **_fs_options(root_uri, storage_options))
        self.root = root.rstrip("/")
        self.lock_wait_s = lock_wait_s
        self.lock_stale_s = lock_stale_s
        self.claim_timeout_s = claim_timeout_s
        self._local = isinstance(self.fs, LocalFileSystem)
        self._alias_log = None if self._local else AliasLog(
            self.fs, self._create_exclusive, wait_s=lock_wait_s
        )

    # -- paths ---------------------------------------------------------------------------
    def _model_dir(self, model: str) -> str:
        return f"{self.root}/models/{validate_name(model, 'model name')}"

    def _version_dir(self, model: str, version: int) -> str:
        return f"{self._model_dir(model)}/versions/{validate_version(version)}"

    def uri(self, model: str, version: int) -> str:
        """The URI of a version's directory."""
        validate_name(model, "model name")
        return f"{self.root_uri}/models/{model}/versions/{validate_version(version)}"

    # -- low-level I/O -------------------------------------------------------------------
    def _read(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def _exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write a file under the registry root: readers see the old content or all of
        ``data`` (temp + fsync + rename; one object write on object stores)."""
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if self._local:
            write_local_atomic(path, data)
            return
        self.fs.pipe_file(path, data)  # one object PUT: readers see all of it or nothing

    def _create_exclusive(self, path: str, data: bytes) -> bool:
        """Create ``path`` only if absent; True when this call created it."""
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if self._local:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            fsync_file(path)
            fsync_dir(parent)
            return True
        try:
            with self.fs.open(path, "xb") as handle:
                handle.write(data)
        except FileExistsError:
            return False
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            raise
        except (NotImplementedError, ValueError) as exc:
            raise RegistryError(
                f"storage {self.root_uri} does not support exclusive create: {exc}"
            ) from exc
        return True

    def _ls_names(self, path: str) -> list[str]:
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return [str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries]

    # -- versions ------------------------------------------------------------------------
    def list_versions(self, model: str) -> list[int]:
        """Committed versions of ``model``, ascending."""
        base = f"{self._model_dir(model)}/versions"
        out = []
        for name in self._ls_names(base):
            if name.isdigit() and self._exists(f"{base}/{name}/{MANIFEST}"):
                out.append(int(name))
        return sorted(out)

    def list_models(self) -> list[str]:
        """Models with at least one directory under the root."""
        return sorted(n for n in self._ls_names(f"{self.root}/models") if _NAME.fullmatch(n))

    def _allocate_version(self, model: str) -> int:
        base = self._model_dir(model)
        taken = [int(n) for n in self._ls_names(f"{base}/claims") if n.isdigit()]
        taken += [int(n) for n in self._ls_names(f"{base}/versions") if n.isdigit()]
        candidate = max(taken, default=0) + 1
        claim = json.dumps({"claimed_at": _now(), "pid": os.getpid()}).encode()
        while not self._create_exclusive(f"{base}/claims/{candidate}", claim):
            candidate += 1
        return candidate

    def _request_path(self, model: str, request_id: str) -> str:
        key = hashlib.sha256(request_id.encode()).hexdigest()[:40]
        return f"{self._model_dir(model)}/requests/{key}.json"

    def find_by_request_id(self, model: str, request_id: str) -> int | None:
        """The committed version registered for ``request_id``, if any."""
        path = self._request_path(model, request_id)
        try:
            binding = json.loads(self._read(path))
        except FileNotFoundError:
            return None
        version = int(binding["version"])
        if binding.get("request_id") == request_id and self._is_committed(model, version):
            return version
        return None

    def _is_committed(self, model: str, version: int) -> bool:
        return self._exists(f"{self._version_dir(model, version)}/{MANIFEST}")

    def register(
        self,
        model: str,
        *,
        state_dict: Mapping[str, torch.Tensor],
        preprocessing: dict[str, Any],
        model_meta: dict[str, Any],
        lineage: Lineage,
        hyperparameters: dict[str, Any],
        metrics: dict[str, float],
        seeds: dict[str, int],
        extra: dict[str, Any] | None = None,
        task: dict[str, Any] | None = None,
    ) -> RegisteredVersion:
        """Store a new immutable version; a known ``lineage.request_id`` returns its version.

        ``task`` is the model's task (``Task.to_dict()``), stored so scorers know what the
        version predicts."""
        validate_name(model, "model name")
        request_id = lineage.request_id
        for _attempt in range(5):
            if request_id is not None:
                existing = self.find_by_request_id(model, request_id)
                if existing is not None:
                    return self._registered(model, existing, created=False)
            version = self._allocate_version(model)
            vdir = self._version_dir(model, version)
            buffer = io.BytesIO()
            import torch

            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
            files = {
                WEIGHTS: buffer.getvalue(),
                PREPROCESSING: json.dumps(preprocessing, sort_keys=True, indent=1).encode(),
            }
            for name, data in files.items():
                self.write_atomic(f"{vdir}/{name}", data)
            if request_id is not None:
                winner = self._bind_request(model, request_id, version)
                if winner != version:
                    self.fs.rm(vdir, recursive=True)  # never committed: nobody can see it
                    if winner is not None:
                        return self._registered(model, winner, created=False)
                    continue  # a stale binding was cleared: try again
            manifest = Manifest(
                model=model,
                version=version,
                created_at=datetime.now(UTC),
                lineage=lineage,
                architecture=model_meta,
                files={n: FileDigest(_sha256(d), len(d)) for n, d in files.items()},
                drift_reference_snapshot_id=lineage.training_snapshot_id,
                hyperparameters=hyperparameters,
                metrics=metrics,
                seeds=seeds,
                code=code_version(),
                extra=extra or {},
                task=dict(task or {}),
            )
            data = json.dumps(manifest.to_dict(), sort_keys=True, indent=1, default=str).encode()
            self.write_atomic(f"{vdir}/{MANIFEST}", data)
            return RegisteredVersion(
                model, version, self.uri(model, version), _sha256(data), manifest, True
            )
        raise RegistryError(f"could not register {model} for request {request_id!r}")

    def _bind_request(self, model: str, request_id: str, version: int) -> int | None:
        """Bind ``request_id`` to ``version``; returns the bound version (ours or the
        winner's), or None when a stale binding was removed and the caller must retry."""
        path = self._request_path(model, request_id)
        record = {"request_id": request_id, "version": version, "bound_at": _now(),
                  "host": socket.gethostname(), "pid": os.getpid()}
        if self._create_exclusive(path, json.dumps(record).encode()):
            return version
        deadline = time.monotonic() + self.claim_timeout_s
        while True:
            try:
                bound = json.loads(self._read(path))
            except FileNotFoundError:
                return None
            winner = int(bound["version"])
            if self._is_committed(model, winner):
                return winner
            age = time.time() - datetime.fromisoformat(bound["bound_at"]).timestamp()
            expired = age > self.claim_timeout_s or time.monotonic() >= deadline
            if expired or _writer_gone(bound):
                # The winner never committed (its writer died): drop its binding.
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(path)
                return None
            time.sleep(0.05)

    def _registered(self, model: str, version: int, created: bool) -> RegisteredVersion:
        data = self._read(f"{self._version_dir(model, version)}/{MANIFEST}")
        return RegisteredVersion(
            model, version, self.uri(model, version), _sha256(data),
            _parse_manifest(model, version, data), created,
        )

    def get(self, model: str, ref: int | str) -> RegisteredVersion:
        """A committed version (by number or alias) with its manifest and manifest sha256."""
        return self._registered(model, self.resolve(model, ref), created=False)

    def manifest(self, model: str, version: int | str) -> Manifest:
        """The manifest of a committed version (or alias), typed."""
        return self._registered(model, self.resolve(model, version), False).manifest

    def resolve(self, model: str, ref: int | str) -> int:
        """A version number from a number, a digit string or an alias name."""
        if isinstance(ref, str) and ref.isdigit():
            ref = int(ref)
        if isinstance(ref, int):
            version = validate_version(ref)
        else:
            found = self.get_alias(model, ref)
            if found is None:
                raise VersionNotFoundError(f"{model} has no alias {ref!r}")
            version = found
        if not self._is_committed(model, version):
            raise VersionNotFoundError(f"{model} has no version {version}")
        return version

    def load(
        self, model: str, ref: int | str, *, expected_manifest_sha256: str | None = None
    ) -> LoadedModel:
        """Read a version, verifying every file before anything is deserialised."""
        version = self.resolve(model, ref)
        vdir = self._version_dir(model, version)
        raw = self._read(f"{vdir}/{MANIFEST}")
        manifest_sha = _sha256(raw)
        if expected_manifest_sha256 is not None and manifest_sha != expected_manifest_sha256:
            raise ArtifactIntegrityError(
                f"{model} v{version}: manifest sha256 {manifest_sha} != expected "
                f"{expected_manifest_sha256}"
            )
        manifest = _parse_manifest(model, version, raw)
        files = manifest.files
        blobs: dict[str, bytes] = {}
        for name in REQUIRED_FILES:
            if name not in files:
                raise ArtifactIntegrityError(f"{model} v{version}: manifest lacks {name}")
            try:
                data = self._read(f"{vdir}/{name}")
            except FileNotFoundError as exc:
                raise ArtifactIntegrityError(f"{model} v{version}: {name} is missing") from exc
            want = files[name]
            if len(data) != want.size:
                raise ArtifactIntegrityError(
                    f"{model} v{version}: {name} has {len(data)} bytes, manifest says "
                    f"{want.size} (truncated or altered)"
                )
            if _sha256(data) != want.sha256:
                raise ArtifactIntegrityError(
                    f"{model} v{version}: {name} sha256 mismatch (tampered or corrupt)"
                )
            blobs[name] = data
        import torch

        state = torch.load(io.BytesIO(blobs[WEIGHTS]), map_location="cpu", weights_only=True)
        return LoadedModel(
            model, version, manifest, manifest_sha, state, json.loads(blobs[PREPROCESSING])
        )

    def show(self, model: str, ref: int | str) -> dict[str, Any]:
        """A version's manifest plus its manifest sha256 and the aliases pointing at it."""
        version = self.resolve(model, ref)
        reg = self._registered(model, version, False)
        names = sorted(a for a, v in self.aliases(model).items() if v == version)
        return {**reg.manifest.to_dict(), "manifest_sha256": reg.manifest_sha256,
                "aliases": names}

    def diff(self, model: str, a: int | str, b: int | str) -> dict[str, tuple[Any, Any]]:
        """Manifest differences between two versions (dotted keys)."""
        return diff_manifests(self.manifest(model, a).to_dict(),
                              self.manifest(model, b).to_dict())

    # -- aliases -------------------------------------------------------------------------
    def _alias_path(self, model: str, alias: str) -> str:
        return f"{self._model_dir(model)}/aliases/{validate_name(alias, 'alias')}.json"

    def _alias_dir(self, model: str, alias: str) -> str:
        return f"{self._model_dir(model)}/aliases/{validate_name(alias, 'alias')}"

    def alias_record(self, model: str, alias: str) -> dict[str, Any] | None:
        """``{"version", "previous", "history", "updated_at"}`` of an alias, or None."""
        if self._alias_log is not None:
            return self._alias_log.record(self._alias_dir(model, alias))
        try:
            return json.loads(self._read(self._alias_path(model, alias)))
        except FileNotFoundError:
            return None

    def get_alias(self, model: str, alias: str) -> int | None:
        """The version an alias points at, or None."""
        record = self.alias_record(model, alias)
        return None if record is None else int(record["version"])

    def aliases(self, model: str) -> dict[str, int]:
        """Every alias of ``model`` and its version."""
        out = {}
        if self._alias_log is not None:
            for name in self._alias_log.names(f"{self._model_dir(model)}/aliases"):
                if _NAME.match(name) and (version := self.get_alias(model, name)) is not None:
                    out[name] = version
            return out
        for name in self._ls_names(f"{self._model_dir(model)}/aliases"):
            if name.endswith(".json") and not name.startswith("."):
                version = self.get_alias(model, name[: -len(".json")])
                if version is not None:
                    out[name[: -len(".json")]] = version
        return out

    @contextlib.contextmanager
    def _alias_lock(self, model: str, alias: str) -> Iterator[None]:
        path = self._alias_path(model, alias)[: -len(".json")] + ".lock"
        token = uuid.uuid4().hex
        body = json.dumps({"token": token, "pid": os.getpid(), "at": time.time()}).encode()
        deadline = time.monotonic() + self.lock_wait_s
        delay = 0.002
        while not self._create_exclusive(path, body):
            self._break_stale_lock(path)
            if time.monotonic() >= deadline:
                raise AliasLockTimeoutError(f"alias {model}/{alias} stayed locked")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError, ValueError):
                if json.loads(self._read(path)).get("token") == token:
                    self.fs.rm(path)

    def _break_stale_lock(self, path: str) -> None:
        try:
            held = json.loads(self._read(path))
        except (FileNotFoundError, ValueError):
            return
        if time.time() - float(held.get("at", 0)) > self.lock_stale_s:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(path)

    def set_alias(self, model: str, alias: str, version: int, *, expected: int | None,
                  back: bool = False) -> None:
        """Point ``alias`` at ``version`` if it currently points at ``expected``.

        ``expected=None`` means the alias must not exist yet. Raises AliasConflictError
        when another writer got there first. The record's ``history`` lists the versions
        the alias pointed at before, oldest first: a forward move appends the current
        version, a move ``back`` (a rollback) returns to an entry and drops it and
        everything after it, so the next rollback goes further back, never forward.
        """
        version = self.resolve(model, version)
        if self._alias_log is not None:
            self._log_compare_and_set(model, alias, version, expected, back=back)
            return
        with self._alias_lock(model, alias):
            old = self.alias_record(model, alias)
            current = None if old is None else int(old["version"])
            if current != expected:
                raise AliasConflictError(model, alias, expected, current)
            record = {"alias": alias, "version": version, "previous": current,
                      "history": moved_history(old, version, back=back), "updated_at": _now()}
            self.write_atomic(self._alias_path(model, alias), json.dumps(record).encode())

    def delete_alias(self, model: str, alias: str, *, expected: int) -> None:
        """Remove ``alias`` if it currently points at ``expected``."""
        if self._alias_log is not None:
            self._log_compare_and_set(model, alias, None, expected)
            return
        with self._alias_lock(model, alias):
            current = self.get_alias(model, alias)
            if current != expected:
                raise AliasConflictError(model, alias, expected, current)
            self.fs.rm(self._alias_path(model, alias))

    def _log_compare_and_set(
        self, model: str, alias: str, version: int | None, expected: int | None,
        *, back: bool = False,
    ) -> None:
        assert self._alias_log is not None
        try:
            self._alias_log.compare_and_set(
                self._alias_dir(model, alias), alias, version, expected,
                lambda actual: AliasConflictError(model, alias, expected, actual),
                history=lambda old: moved_history(old, version, back=back),
            )
        except TimeoutError as exc:
            raise AliasLockTimeoutError(f"alias {model}/{alias}: {exc}") from exc

    # rollback: the shadow builder adds `rollback(model, ...)` here; it moves `champion`
    # back to the alias record's ``previous`` by the same compare-and-set.

    # -- retention -----------------------------------------------------------------------
    def apply_retention(self, model: str, keep_last: int) -> list[int]:
        """Delete all but the newest ``keep_last`` unaliased versions; returns the deleted.

        Versions an alias points at, and each alias's previous version (the rollback
        target), are never deleted. Deleted numbers are never reused.
        """
        if keep_last < 0:
            raise ValueError("keep_last must be >= 0")
        protected: set[int] = set()
        for alias in self.aliases(model):
            record = self.alias_record(model, alias) or {}
            protected |= {int(v) for v in (record.get("version"), record.get("previous")) if v}
        unaliased = [v for v in self.list_versions(model) if v not in protected]
        doomed = unaliased[: max(len(unaliased) - keep_last, 0)]
        for version in doomed:
            vdir = self._version_dir(model, version)
            self.fs.rm(f"{vdir}/{MANIFEST}")  # uncommit first: readers stop seeing it
            self.fs.rm(vdir, recursive=True)
        return doomed


def _fs_options(root_uri: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """fsspec options: remote stores are listed fresh every time (no listing cache)."""
    protocol = fsspec.core.split_protocol(root_uri)[0] or "file"
    options: dict[str, Any] = {}
    if protocol not in {"file", "local", "memory"}:
        options["use_listings_cache"] = False
    options.update(given or {})
    return options


def _precondition_failed(exc: OSError) -> bool:
    """Whether an object store refused a conditional create because the object exists
    (HTTP 412 ``PreconditionFailed``; 409 ``ConditionalRequestConflict`` while another
    conditional write of the same key is in progress)."""
    cause = exc.__cause__
    code = getattr(cause, "response", {}).get("Error", {}).get("Code") if cause else None
    if code in {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}:
        return True
    return "pre-condition" in str(exc).lower() or "precondition" in str(exc).lower()


def moved_history(
    old: Mapping[str, Any] | None, version: int | None, *, back: bool
) -> list[int]:
    """The alias history after moving from record ``old`` to ``version``.

    A forward move appends the current version; a move ``back`` (a rollback) to a version
    in the history drops it and everything after it, so rollbacks never go forward.
    """
    history = [int(v) for v in old["history"]] if old is not None else []
    current = None if old is None else old.get("version")
    if back and version in history:
        return history[: history.index(version)]
    if current is not None:
        history.append(int(current))
    return history


def _parse_manifest(model: str, version: int, raw: bytes) -> Manifest:
    """The typed manifest of ``raw``; ArtifactIntegrityError when it cannot be read."""
    try:
        return Manifest.from_dict(json.loads(raw))
    except (ValueError, ManifestError) as exc:
        raise ArtifactIntegrityError(f"{model} v{version}: unreadable manifest: {exc}") from exc


def _writer_gone(binding: Mapping[str, Any]) -> bool:
    """Whether a binding's writer ran on this host and has exited (it can never commit)."""
    pid = binding.get("pid")
    if binding.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    return pid != os.getpid() and not process_alive(pid)
