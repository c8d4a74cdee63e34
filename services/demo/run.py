"""``make demo``: bring up the embedded broker and show driftloop working end to end.

Each step says what it did; the demo exits non-zero if any step fails (the whole loop
must end in a promotion), and always stops the broker it started. Its state (Feast
repo copy, registry, checkpoints, logs, traces, the HTML report) lives in
``.driftloop/demo`` and is recreated on every run.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
import warnings
from pathlib import Path

from rich.console import Console
from rich.table import Table

from services.cli.logs import JsonLineFormatter
from services.demo.loop import run_loop_demo
from services.demo.roundtrip import run_private_round_trip
from services.observability.setup import init_telemetry
from streams.admin import create_topics
from streams.broker import EmbeddedBroker, free_port, port_accepts
from streams.settings import Settings, load_settings

console = Console()


DEMO_DIR = Path(".driftloop/demo")


def _demo_settings() -> tuple[Settings, EmbeddedBroker]:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    base = load_settings()
    port = base.broker.port
    if port_accepts(base.broker.host, port):
        port = free_port()
        console.print(f"port {base.broker.port} is busy; the demo broker uses {port} instead")
    settings = load_settings(
        kafka={"bootstrap_servers": f"{base.broker.host}:{port}"},
        broker={"port": port, "host": base.broker.host},
        state_dir=DEMO_DIR,
        registry_uri=str(DEMO_DIR / "registry"),
        feast={**base.feast.model_dump(), "repo": DEMO_DIR / "feature_repo",
               "variant": "embedded"},
        # traces to a file and progress as log lines, unless the user asked otherwise
        observability={
            "otel_file": DEMO_DIR / "otel.jsonl",
            "progress": "log",
            "otel": {"OTEL_TRACES_EXPORTER": "file", **base.observability.otel},
        },
    )
    broker = EmbeddedBroker(DEMO_DIR / "broker", host=settings.broker.host, port=port)
    return settings, broker


def _quiet_logs() -> Path:
    """Service logs go to a file: the console belongs to the live view."""
    path = DEMO_DIR / "demo.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    root._driftloop_configured = True  # type: ignore[attr-defined]
    return path


def main() -> int:
    """Run the demo; returns the exit code."""
    settings, broker = _demo_settings()
    log_path = _quiet_logs()
    warnings.filterwarnings("ignore", message="Retrieving datasets is an experimental feature")
    console.print(f"service logs: {log_path}; traces (OTLP-JSON): {DEMO_DIR / 'otel.jsonl'}")
    init_telemetry("driftloop-demo", settings=settings)
    started = time.monotonic()
    try:
        console.rule("1. embedded broker")
        pid = broker.start()
        console.print(f"tansu broker up on {broker.address} (pid {pid})")

        console.rule("2. topics")
        created = create_topics(settings)
        console.print(", ".join(f"{t} ({s})" for t, s in created.items()))

        console.rule("3. round trip of every event type")
        # Its own topics (created, then deleted): the sample events never reach the loop.
        trip = run_private_round_trip(settings, timeout_s=60)
        result, probe = trip.result, trip.settings
        table = Table("topic", "schema", "came back equal", "event_id + traceparent headers")
        for name, event in result.sent.items():
            table.add_row(
                probe.topic(name), event.__struct_config__.tag,
                "yes" if result.received.get(name) == event else "NO",
                "yes" if result.traced.get(name) else "NO",
            )
        console.print(table)
        console.print(
            f"a malformed message went to {probe.topic('deadletter')} "
            f"with reason {result.dead_letter_reason!r}"
        )
        if not result.ok:
            console.print("[red]demo failed: the round trip did not come back intact[/]")
            return 1

        code = run_loop_demo(settings, console)
        if code != 0:
            return code
    finally:
        broker.stop()
        console.print(f"broker stopped; demo took {time.monotonic() - started:.1f}s")
    console.print("[green]demo OK[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
