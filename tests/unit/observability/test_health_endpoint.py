"""/healthz and /metrics answer over loopback."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from services.observability.health import HealthServer, start_health_server
from services.observability.setup import TelemetryConfig, init_telemetry


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_healthz_reports_status_and_progress() -> None:
    state = {"status": "ok"}
    server = HealthServer("drift", host="127.0.0.1", port=0,
                          status=lambda: state["status"]).start()
    try:
        assert server.port != 0
        code, ctype, body = _get(f"{server.url}/healthz")
        doc = json.loads(body)
        assert (code, ctype) == (200, "application/json")
        assert doc["service"] == "drift" and doc["status"] == "ok"
        assert doc["last_progress"] is None
        server.mark_progress()
        doc = json.loads(_get(f"{server.url}/healthz")[2])
        assert doc["last_progress"] is not None and doc["last_progress_age_s"] < 5
        state["status"] = "degraded"
        code, _, body = _get(f"{server.url}/healthz")
        assert code == 503 and json.loads(body)["status"] == "degraded"
        assert _get(f"{server.url}/nope")[0] == 404
        assert _get(f"{server.url}/metrics")[0] == 404  # not enabled
    finally:
        server.stop()


def test_failing_check_and_stale_progress_degrade() -> None:
    def broken() -> str:
        raise RuntimeError("store down")

    server = HealthServer("t", host="127.0.0.1", status=broken)
    doc = server.snapshot()
    assert doc["status"] == "degraded" and "store down" in doc["detail"]["error"]
    stale = HealthServer("t", host="127.0.0.1", stale_after_s=0.05)
    assert stale.snapshot()["status"] == "ok"
    time.sleep(0.1)
    assert stale.snapshot()["status"] == "degraded"
    stale.mark_progress()
    assert stale.snapshot()["status"] == "ok"
    server.stop()
    stale.stop()


def test_metrics_endpoint_serves_prometheus_text() -> None:
    tel = init_telemetry(
        "unit-prom", settings=TelemetryConfig(metrics_exporters=("prometheus",)),
        install_global=False,
    )
    assert start_health_server(tel, port=0) is None  # 0 in configuration = off
    server = HealthServer(tel.service_name, host="127.0.0.1", port=0,
                          registry=tel.prometheus_registry).start()
    try:
        tel.metrics.record_consumed("features", "drift", 7)
        tel.metrics.record_training_finished("churn", "completed", 12.0)
        code, ctype, body = _get(f"{server.url}/metrics")
        text = body.decode()
        assert code == 200 and ctype.startswith("text/plain")
        assert 'driftloop_stream_consumed_total{' in text
        assert 'messaging_destination_name="features"' in text
        assert "driftloop_training_duration_seconds_bucket{" in text
        assert 'service_name="unit-prom"' in text  # target_info carries the resource
    finally:
        server.stop()
        tel.shutdown()
