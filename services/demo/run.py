"""``make demo``: bring up the embedded broker and show driftloop working end to end.

Each step says what it did; the demo exits non-zero if any step fails, and always
stops the broker it started.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.table import Table

from services.demo.roundtrip import run_round_trip
from services.observability.setup import init_telemetry
from streams.admin import create_topics
from streams.broker import EmbeddedBroker, free_port, port_accepts
from streams.settings import Settings, load_settings

console = Console()


def _demo_settings() -> tuple[Settings, EmbeddedBroker]:
    base = load_settings()
    port = base.broker.port
    if port_accepts(base.broker.host, port):
        port = free_port()
        console.print(f"port {base.broker.port} is busy; the demo broker uses {port} instead")
    settings = load_settings(
        kafka={"bootstrap_servers": f"{base.broker.host}:{port}"},
        broker={"port": port, "host": base.broker.host},
    )
    broker = EmbeddedBroker(settings.state_dir / "demo", host=settings.broker.host, port=port)
    return settings, broker


def main() -> int:
    """Run the demo; returns the exit code."""
    settings, broker = _demo_settings()
    init_telemetry("driftloop-demo")
    started = time.monotonic()
    try:
        console.rule("1. embedded broker")
        pid = broker.start()
        console.print(f"tansu broker up on {broker.address} (pid {pid})")

        console.rule("2. topics")
        created = create_topics(settings)
        console.print(", ".join(f"{t} ({s})" for t, s in created.items()))

        console.rule("3. round trip of every event type")
        result = run_round_trip(settings, timeout_s=60)
        table = Table("topic", "schema", "came back equal", "event_id + traceparent headers")
        for name, event in result.sent.items():
            table.add_row(
                settings.topic(name), event.__struct_config__.tag,
                "yes" if result.received.get(name) == event else "NO",
                "yes" if result.traced.get(name) else "NO",
            )
        console.print(table)
        console.print(
            f"a malformed message went to {settings.topic('deadletter')} "
            f"with reason {result.dead_letter_reason!r}"
        )
        if not result.ok:
            console.print("[red]demo failed: the round trip did not come back intact[/]")
            return 1
    finally:
        broker.stop()
        console.print(f"broker stopped; demo took {time.monotonic() - started:.1f}s")
    console.print("[green]demo OK[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
