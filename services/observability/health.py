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

``HealthServer(port=0)`` binds an ephemeral port (tests); in configuration, port ``0``
means "no endpoint" (:func:`start_health_server` returns ``None``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PORT_ENV = "DRIFTLOOP_HEALTH_PORT"
HOST_ENV = "DRIFTLOOP_HEALTH_HOST"
StatusFn = Callable[[], "str | tuple[str, dict[str, Any]]"]
PostHandler = Callable[[bytes], tuple[int, dict[str, Any]]]
"""``handler(body) -> (HTTP status, JSON document)`` for one ``POST`` path."""
MAX_BODY_BYTES = 1 << 20  # 1 MiB: a prediction request is a few hundred bytes

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


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
    ) -> None:
        self.service_name = service_name
        self._routes = dict(routes or {})
        self._status = status
        self._registry = registry
        self._stale_after_s = stale_after_s
        self._started = time.time()
        self._last_progress: float | None = None
        self._httpd = _Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

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

    def mark_progress(self) -> None:
        """Record that the service's loop made progress (a poll, a batch, a training step)."""
        self._last_progress = time.time()

    def snapshot(self) -> dict[str, Any]:
        """The ``/healthz`` document."""
        now = time.time()
        detail: dict[str, Any] = {}
        status = "ok"
        if self._status is not None:
            try:
                result = self._status()
            except Exception as exc:  # a failing check is a degraded service, not a 500
                result = ("degraded", {"error": f"{type(exc).__name__}: {exc}"})
            if isinstance(result, tuple):
                status, detail = result[0], dict(result[1])
            else:
                status = result
        age = None if self._last_progress is None else now - self._last_progress
        if self._stale_after_s is not None:
            since = self._last_progress if self._last_progress is not None else self._started
            if now - since > self._stale_after_s:
                status = "degraded"
                detail.setdefault("stale", f"no progress for {now - since:.0f} s")
        if status not in ("ok", "degraded"):
            status = "degraded"
        return {
            "service": self.service_name,
            "status": status,
            "last_progress": None
            if self._last_progress is None
            else datetime.fromtimestamp(self._last_progress, UTC).isoformat(),
            "last_progress_age_s": age,
            "uptime_s": now - self._started,
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
        handler = self._routes.get(path)
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
            timeout = 30  # a client that stops sending its body does not hold a thread

            def do_GET(self) -> None:
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
                path = self.path.split("?", 1)[0]
                if path not in server._routes:
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
                code, out = server.handle_post(path, body)
                self._send(code, "application/json", out)

            def _send_error(self, code: int, message: str) -> None:
                self.close_connection = True  # an unread body must not reach the next request
                self._send(code, "application/json", _json({"error": message}))

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None  # probes every few seconds would flood the logs

        return Handler


def _json(doc: dict[str, Any]) -> bytes:
    """Strict JSON (a NaN is an error, not an invalid ``NaN`` token)."""
    return json.dumps(doc, allow_nan=False).encode()


def start_health_server(
    telemetry: Any,
    *,
    port: int | None = None,
    host: str | None = None,
    status: StatusFn | None = None,
    stale_after_s: float | None = None,
    routes: Mapping[str, PostHandler] | None = None,
) -> HealthServer | None:
    """Start the endpoint for a service's :class:`Telemetry`; ``None`` when the port is 0.

    ``port``/``host`` default to ``DRIFTLOOP_HEALTH_PORT`` (default 0 = off) and
    ``DRIFTLOOP_HEALTH_HOST`` (default ``0.0.0.0``); ``routes`` are the ``POST`` paths.
    """
    if port is None:
        port = int(os.environ.get(PORT_ENV, "0") or 0)
    if port == 0:
        return None
    server = HealthServer(
        telemetry.service_name,
        host=host or os.environ.get(HOST_ENV, "0.0.0.0"),
        port=port,
        status=status,
        registry=getattr(telemetry, "prometheus_registry", None),
        stale_after_s=stale_after_s,
        routes=routes,
    )
    return server.start()
