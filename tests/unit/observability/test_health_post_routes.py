"""POST routes on the health endpoint: handlers answer JSON, errors never leak internals."""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from services.observability.health import MAX_BODY_BYTES, HealthServer, start_health_server
from services.observability.setup import in_memory_telemetry


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        assert err.headers["Content-Type"] == "application/json"
        return err.code, json.loads(err.read())


def _raw(server: HealthServer, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any]:
    """A request with exactly these headers (urllib always sets Content-Length)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.putrequest("POST", "/echo", skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(body or None)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _echo(body: bytes) -> tuple[int, dict[str, Any]]:
    doc = json.loads(body)
    return int(doc.get("status", 200)), {"echo": doc, "size": len(body)}


def _boom(body: bytes) -> tuple[int, dict[str, Any]]:
    raise RuntimeError("secret-detail /etc/driftloop/key")


@pytest.fixture
def server() -> Iterator[HealthServer]:
    routes = {"/echo": _echo, "/boom": _boom,
              "/nan": lambda body: (200, {"p": float("nan")})}
    srv = HealthServer("svc", host="127.0.0.1", port=0, status=lambda: "ok",
                       routes=routes).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_route_answers_with_its_status_and_document(server: HealthServer) -> None:
    code, doc = _post(f"{server.url}/echo", b'{"a": 1}')
    assert code == 200 and doc == {"echo": {"a": 1}, "size": 8}
    code, doc = _post(f"{server.url}/echo?x=1", b'{"status": 422}')
    assert code == 422 and doc["echo"] == {"status": 422}


def test_unknown_path_is_a_json_404(server: HealthServer) -> None:
    code, doc = _post(f"{server.url}/nope", b"{}")
    assert code == 404 and "/nope" in doc["error"]
    code, doc = _post(f"{server.url}/healthz", b"{}")  # GET-only paths are not POST routes
    assert code == 404


def test_oversize_body_is_413_before_it_is_read(server: HealthServer) -> None:
    code, doc = _raw(server, {"Content-Length": str(MAX_BODY_BYTES + 1)})
    assert code == 413 and "bytes" in doc["error"]
    # exactly the limit is accepted (the handler sees the whole body)
    body = b'{"pad": "' + b"x" * (MAX_BODY_BYTES - 11) + b'"}'
    assert len(body) == MAX_BODY_BYTES
    code, doc = _post(f"{server.url}/echo", body)
    assert code == 200 and doc["size"] == MAX_BODY_BYTES


def test_missing_or_invalid_content_length(server: HealthServer) -> None:
    assert _raw(server, {})[0] == 411
    assert _raw(server, {"Transfer-Encoding": "chunked"})[0] == 411
    code, doc = _raw(server, {"Content-Length": "ten"})
    assert code == 400 and "Content-Length" in doc["error"]
    assert _raw(server, {"Content-Length": "-5"})[0] == 400


def test_handler_exception_is_500_without_internals(
    server: HealthServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="services.observability.health"):
        code, doc = _post(f"{server.url}/boom", b"{}")
        code_bad_json, _ = _post(f"{server.url}/echo", b"not json")  # handler raises too
    assert code == 500 and code_bad_json == 500
    assert set(doc) == {"error"}
    text = json.dumps(doc)
    assert "secret-detail" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert any("secret-detail" in (r.exc_text or "") for r in caplog.records)  # logged


def test_unencodable_answer_is_500(server: HealthServer) -> None:
    code, doc = _post(f"{server.url}/nan", b"{}")
    assert code == 500 and "internal error" in doc["error"]


def test_get_is_unchanged_by_routes(server: HealthServer) -> None:
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        assert json.loads(resp.read())["service"] == "svc"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{server.url}/echo", timeout=5)  # a POST route is not a GET one
    assert err.value.code == 404 and err.value.headers["Content-Type"] == "text/plain"


def test_start_health_server_passes_routes() -> None:
    telemetry = in_memory_telemetry("routes")
    srv = start_health_server(telemetry, port=0, routes={"/echo": _echo})
    assert srv is None  # port 0 in configuration is still "off"
    from streams.broker import free_port

    srv = start_health_server(telemetry, port=free_port(), host="127.0.0.1",
                              routes={"/echo": _echo})
    assert srv is not None
    try:
        assert _post(f"{srv.url}/echo", b"{}") == (200, {"echo": {}, "size": 2})
    finally:
        srv.stop()
