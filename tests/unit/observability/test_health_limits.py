"""The HTTP endpoint's limits: whole-request deadline, connection cap, one per process."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
import urllib.request
from typing import Any

from services.observability.health import HealthServer, start_health_server
from streams.broker import free_port
from streams.settings import HttpSettings


class _Telemetry:
    def __init__(self, name: str) -> None:
        self.service_name = name


def _slow_client(port: int, every_s: float, held: list[float]) -> None:
    """Send a request line, then one header line every ``every_s`` until cut off; append
    how long the connection was held: from before the connect (the server cannot start
    its deadline earlier) to the moment a reader sees the server end it."""
    cut = threading.Event()
    cut_at: list[float] = []
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(30)

        def read() -> None:
            with contextlib.suppress(OSError):
                sock.recv(1)  # b"" when the server shuts the socket down (or an answer)
            cut_at.append(time.monotonic())
            cut.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            for i in range(100):  # per-read timeouts would keep this going for 30 s
                if cut.wait(every_s):
                    break
                sock.sendall(f"X-Slow-{i}: 1\r\n".encode())
        except OSError:
            pass  # reset by the server
        reader.join(30)
    held.append(cut_at[0] - started if cut_at else math.inf)


def test_a_slow_client_is_cut_off_at_the_request_deadline() -> None:
    deadline = 1.0
    server = HealthServer("t", host="127.0.0.1", port=0, request_deadline_s=deadline).start()
    held: list[float] = []
    try:
        clients = [threading.Thread(target=_slow_client, args=(server.port, 0.3, held))
                   for _ in range(3)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(40)
        assert len(held) == 3, held
        # Not before the deadline (a server cutting at the first slow read would: each
        # line comes 0.3 s after the last); the timer never fires early, and load only
        # delays the cut, so the lower bound needs no more slack than clock rounding.
        assert min(held) >= deadline - 0.05, held
        # Not much after it either (per-read timeouts would hold the client 30 s).
        assert max(held) < deadline + 3.0, held
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as resp:
            assert resp.status == 200
    finally:
        server.stop()


def test_connections_over_the_cap_are_closed_at_once() -> None:
    server = HealthServer("t", host="127.0.0.1", port=0, request_deadline_s=5.0,
                          max_connections=2).start()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        time.sleep(0.3)  # both accepted and held by their handler threads
        with socket.create_connection(("127.0.0.1", server.port)) as third:
            third.settimeout(3)
            third.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            assert third.recv(100) == b""  # closed without an answer
        assert server.refused_connections == 1
    finally:
        for sock in idle:
            sock.close()
        time.sleep(0.3)
    try:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as resp:
            assert resp.status == 200  # slots are released when the connections end
    finally:
        server.stop()


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_services_of_one_process_share_one_server() -> None:
    http = HttpSettings(host="127.0.0.1", port=free_port())
    state = {"drift": "ok"}
    ingest = start_health_server(_Telemetry("driftloop-ingest"), http=http)
    drift = start_health_server(_Telemetry("driftloop-drift"), http=http,
                                status=lambda: state["drift"])
    assert ingest is not None and drift is not None
    try:
        assert ingest.server is drift.server
        code, doc = _get(f"{ingest.url}/healthz")
        assert code == 200 and set(doc["services"]) == {"driftloop-ingest", "driftloop-drift"}
        state["drift"] = "degraded"
        code, doc = _get(f"{ingest.url}/healthz")
        assert code == 503 and doc["services"]["driftloop-ingest"]["status"] == "ok"
        ingest.stop()  # one leaves: the other still answers
        code, doc = _get(f"{drift.url}/healthz")
        assert code == 503 and doc["service"] == "driftloop-drift"
    finally:
        drift.stop()
    with socket.socket() as probe:  # the last one out closed the port
        assert probe.connect_ex(("127.0.0.1", http.port)) != 0
