"""A tiny HTTP endpoint per service: ``/healthz`` and, optionally, Prometheus ``/metrics``.

Stdlib ``http.server`` in a daemon thread; nothing here touches the service's work.

- ``GET /healthz`` → JSON ``{"service", "status", "last_progress", "last_progress_age_s",
  "uptime_s", "detail"}``, HTTP 200 when ``status`` is ``ok``, 503 when ``degraded``.
  Status comes from the service's callback and from progress: a service that declared
  ``stale_after_s`` and has not called :meth:`HealthServer.mark_progress` for that long is
  degraded (a wedged poll loop); an idle stream still marks progress on every poll.
- ``GET /metrics`` → the Prometheus text exposition of the service's metrics, when its
  telemetry was built with ``OTEL_METRICS_EXPORTER`` containing ``prometheus``.
- ``POST <path>`` → the service's own routes (``routes``: path → :data:`PostHandler`), so a
  service can answer requests (the online learner's ``/predict``) on the port it already
  exposes. The body is read only with a valid ``Content-Length`` of at most
  :data:`MAX_BODY_BYTES`; answers are JSON, errors ``{"error": "..."}`` (a failing
  handler is logged and answered 500 without its traceback).

Limits (``settings.http``): a whole request, headers and body, must arrive within
``request_deadline_s`` (a watchdog shuts the socket down at the deadline, so a client
sending one header line every few seconds is cut off, not kept alive by per-read
timeouts); at most ``max_connections`` connections are served at once, the others are
closed at once.

One endpoint per process: services running in one process (``driftloop run ingest
drift ...``) share one server on the configured port (:func:`start_health_server`
attaches them to it). ``/healthz`` then answers for all of them: ``status`` is ``ok``
only if every service is ok, and ``services`` holds each one's document.

``HealthServer(port=0)`` binds an ephemeral port (tests); in configuration, port ``0``
means "no endpoint" (:func:`start_health_server` returns ``None``).

Why the standard library and not uvicorn (installed with feast): uvicorn bounds the
idle keep-alive and the number of connections, but has no deadline for a request's
headers, which is what a slow client holds; the watchdog below is a few lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from streams.settings import HttpSettings

StatusFn = Callable[[], "str | tuple[str, dict[str, Any]]"]
PostHandler = Callable[[bytes], tuple[int, dict[str, Any]]]
"""``handler(body) -> (HTTP status, JSON document)`` for one ``POST`` path."""
MAX_BODY_BYTES = 1 << 20  # 1 MiB: a prediction request is a few hundred bytes

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    """Threading server that serves at most ``max_connections`` connections at once."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)  # over the cap: closed at once
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


@dataclass
class _Member:
    """One service answering on a (possibly shared) server."""

    name: str
    status: StatusFn | None
    stale_after_s: float | None
    routes: dict[str, PostHandler]
    started: float = field(default_factory=time.time)
    last_progress: float | None = None


class HealthServer:
    """Serves ``/healthz`` (and ``/metrics`` when given a Prometheus registry).

    ``routes`` adds ``POST`` paths answered by the service's handlers (see the module doc).
    """

    def __init__(
        self,
        service_name: str,
        *,
        host: str = "0.0.0.0",
        port: int = 0,
        status: StatusFn | None = None,
        registry: Any | None = None,
        stale_after_s: float | None = None,
        routes: Mapping[str, PostHandler] | None = None,
        request_deadline_s: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        self.service_name = service_name
        self._lock = threading.Lock()
        self._members: dict[str, _Member] = {}
        self._registry = registry
        self._started = time.time()
        self.request_deadline_s = request_deadline_s
        self._httpd = _Server((host, port), self._handler_class(), max_connections)
        self._thread: threading.Thread | None = None
        self.attach(service_name, status=status, stale_after_s=stale_after_s, routes=routes)

    # -- members -----------------------------------------------------------------------

    def attach(
        self,
        name: str,
        *,
        status: StatusFn | None = None,
        stale_after_s: float | None = None,
        routes: Mapping[str, PostHandler] | None = None,
    ) -> None:
        """Answer for one more service; its ``POST`` paths must not be taken already."""
        with self._lock:
            if name in self._members:
                raise ValueError(f"a service named {name!r} already answers on {self.url}")
            taken = {p for m in self._members.values() for p in m.routes} & set(routes or {})
            if taken:
                raise ValueError(f"POST routes {sorted(taken)} already answered on {self.url}")
            self._members[name] = _Member(name, status, stale_after_s, dict(routes or {}))

    def detach(self, name: str) -> int:
        """Stop answering for ``name``; returns how many services are left."""
        with self._lock:
            self._members.pop(name, None)
            return len(self._members)

    @property
    def members(self) -> list[str]:
        with self._lock:
            return list(self._members)

    @property
    def refused_connections(self) -> int:
        """Connections closed at once because ``max_connections`` were being served."""
        return self._httpd.refused

    def _route(self, path: str) -> PostHandler | None:
        with self._lock:
            for member in self._members.values():
                if path in member.routes:
                    return member.routes[path]
        return None

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when constructed with 0)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self._httpd.server_address[0]
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.1},  # how long stop() may wait
                name=f"health-{self.service_name}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def mark_progress(self, name: str | None = None) -> None:
        """Record that a service's loop made progress (a poll, a batch, a training step)."""
        member = self._members.get(name or self.service_name)
        if member is not None:
            member.last_progress = time.time()

    def snapshot(self) -> dict[str, Any]:
        """The ``/healthz`` document (one service's, or all of them when shared)."""
        with self._lock:
            members = list(self._members.values())
        if len(members) == 1:
            return self._member_snapshot(members[0])
        docs = {m.name: self._member_snapshot(m) for m in members}
        ok = all(doc["status"] == "ok" for doc in docs.values())
        return {
            "service": ",".join(docs),
            "status": "ok" if ok else "degraded",
            "uptime_s": time.time() - self._started,
            "services": docs,
        }

    def _member_snapshot(self, member: _Member) -> dict[str, Any]:
        now = time.time()
        detail: dict[str, Any] = {}
        status = "ok"
        if member.status is not None:
            try:
                result = member.status()
            except Exception as exc:  # a failing check is a degraded service, not a 500
                result = ("degraded", {"error": f"{type(exc).__name__}: {exc}"})
            if isinstance(result, tuple):
                status, detail = result[0], dict(result[1])
            else:
                status = result
        last = member.last_progress
        age = None if last is None else now - last
        if member.stale_after_s is not None:
            since = last if last is not None else member.started
            if now - since > member.stale_after_s:
                status = "degraded"
                detail.setdefault("stale", f"no progress for {now - since:.0f} s")
        if status not in ("ok", "degraded"):
            status = "degraded"
        return {
            "service": member.name,
            "status": status,
            "last_progress": None
            if last is None
            else datetime.fromtimestamp(last, UTC).isoformat(),
            "last_progress_age_s": age,
            "uptime_s": now - member.started,
            "detail": detail,
        }

    def _metrics_text(self) -> bytes | None:
        if self._registry is None:
            return None
        from prometheus_client.exposition import generate_latest

        return generate_latest(self._registry)

    def handle_post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Run the route of ``path`` on ``body``: HTTP status and the encoded JSON answer.

        Anything a handler raises, or an answer that is not a JSON document, is logged
        here and answered 500 with a generic message: the client never sees internals.
        """
        handler = self._route(path)
        if handler is None:
            return 404, _json({"error": f"no POST route {path}"})
        try:
            code, doc = handler(body)
            if not isinstance(doc, dict) or not 100 <= int(code) <= 599:
                raise TypeError(f"handler answered {code!r} with {type(doc).__name__}")
            return int(code), _json(doc)
        except Exception:
            log.exception("%s: POST %s failed", self.service_name, path)
            return 500, _json({"error": "internal error (see the service log)"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = server.request_deadline_s  # per read; the watchdog bounds the whole
            _watchdog: threading.Timer | None = None
            _cut = False  # the deadline passed: whatever was read is not answered

            def handle_one_request(self) -> None:
                # The whole request (request line, headers, body) within the deadline: a
                # timer shuts the socket down, which ends any read in progress.
                self._watchdog = threading.Timer(server.request_deadline_s, self._cut_off)
                self._watchdog.daemon = True
                self._watchdog.start()
                try:
                    super().handle_one_request()
                finally:
                    self._request_read()

            def _cut_off(self) -> None:
                self._cut = True
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _request_read(self) -> bool:
                """Stop the watchdog; whether the request arrived within the deadline."""
                if self._watchdog is not None:
                    self._watchdog.cancel()
                    self._watchdog = None
                return not self._cut

            def do_GET(self) -> None:
                if not self._request_read():
                    return
                path = self.path.split("?", 1)[0]
                if path in ("/healthz", "/livez", "/readyz"):
                    doc = server.snapshot()
                    code = 200 if doc["status"] == "ok" else 503
                    self._send(code, "application/json", json.dumps(doc).encode())
                elif path == "/metrics":
                    body = server._metrics_text()
                    if body is None:
                        self._send(404, "text/plain", b"metrics exporter not enabled\n")
                    else:
                        from prometheus_client.exposition import CONTENT_TYPE_LATEST

                        self._send(200, CONTENT_TYPE_LATEST, body)
                else:
                    self._send(404, "text/plain", b"not found\n")

            def do_POST(self) -> None:
                if self._cut:
                    return
                path = self.path.split("?", 1)[0]
                if server._route(path) is None:
                    self._send_error(404, f"no POST route {path}")
                    return
                raw = self.headers.get("Content-Length")
                if raw is None:
                    self._send_error(411, "Content-Length required")
                    return
                try:
                    length = int(raw)
                except ValueError:
                    length = -1
                if length < 0:
                    self._send_error(400, f"invalid Content-Length {raw[:40]!r}")
                    return
                if length > MAX_BODY_BYTES:
                    self._send_error(413, f"body over {MAX_BODY_BYTES} bytes")
                    return
                try:
                    body = self.rfile.read(length)
                except OSError:  # timed out or reset: nobody to answer
                    self.close_connection = True
                    return
                if len(body) != length:
                    self._send_error(400, "body shorter than Content-Length")
                    return
                if not self._request_read():
                    return
                code, out = server.handle_post(path, body)
                self._send(code, "application/json", out)

            def _send_error(self, code: int, message: str) -> None:
                self.close_connection = True  # an unread body must not reach the next request
                self._send(code, "application/json", _json({"error": message}))

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client went away (or was cut off): nobody to answer
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                return None  # probes every few seconds would flood the logs

        return Handler


def _json(doc: dict[str, Any]) -> bytes:
    """Strict JSON (a NaN is an error, not an invalid ``NaN`` token)."""
    return json.dumps(doc, allow_nan=False).encode()


_shared: dict[tuple[str, int], HealthServer] = {}
_shared_lock = threading.Lock()


class HealthHandle:
    """One service's place on the process's shared endpoint (what a service holds)."""

    def __init__(self, server: HealthServer, name: str) -> None:
        self.server = server
        self.name = name

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def mark_progress(self) -> None:
        self.server.mark_progress(self.name)

    def stop(self) -> None:
        """Detach this service; the last one to leave stops the server."""
        with _shared_lock:
            if self.server.detach(self.name) == 0:
                for key, found in list(_shared.items()):
                    if found is self.server:
                        del _shared[key]
                self.server.stop()


def start_health_server(
    telemetry: Any,
    *,
    http: HttpSettings | None = None,
    port: int | None = None,
    host: str | None = None,
    status: StatusFn | None = None,
    stale_after_s: float | None = None,
    routes: Mapping[str, PostHandler] | None = None,
) -> HealthHandle | None:
    """Attach a service to its process's endpoint (started on first use); ``None`` when off.

    ``http`` (``settings.http``) gives the port (0 = off), host, request deadline and
    connection cap; ``port``/``host`` override it. Services of one process asking for
    the same host and port share one server.
    """
    http = http or HttpSettings()
    port = http.port if port is None else port
    if port == 0:
        return None
    host = host or http.host
    name = telemetry.service_name
    with _shared_lock:
        server = _shared.get((host, port))
        if server is None:
            server = HealthServer(
                name, host=host, port=port, status=status,
                registry=getattr(telemetry, "prometheus_registry", None),
                stale_after_s=stale_after_s, routes=routes,
                request_deadline_s=http.request_deadline_s,
                max_connections=http.max_connections,
            ).start()
            _shared[(host, port)] = server
        else:
            if server._registry is None:
                server._registry = getattr(telemetry, "prometheus_registry", None)
            server.attach(name, status=status, stale_after_s=stale_after_s, routes=routes)
    return HealthHandle(server, name)
