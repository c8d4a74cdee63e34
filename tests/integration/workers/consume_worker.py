"""A consumer process for the delivery tests: records what it handled, then obeys its mode.

Usage: consume_worker.py BOOTSTRAP PREFIX GROUP OUT_FILE MODE
MODE ``crash``: SIGKILL itself inside the first non-empty batch, after recording it
and before the commit. MODE ``serve``: run until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from streams.consumer import ConsumerLoop, Inbound
from streams.contracts import LabelEvent
from streams.settings import load_settings


def main() -> None:
    bootstrap, prefix, group, out_file, mode = sys.argv[1:6]
    settings = load_settings(kafka={"bootstrap_servers": bootstrap}, topics={"prefix": prefix})

    def handle(batch: list[Inbound[Any]]) -> None:
        if not batch:
            return None
        with open(out_file, "a") as out:
            for inbound in batch:
                out.write(f"{inbound.event.event_id}\n")
            out.flush()
            os.fsync(out.fileno())
        if mode == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        return None

    loop = ConsumerLoop(
        settings, group_id=group, topics={settings.topic("labels"): LabelEvent},
        handle_batch=handle, service_name="worker", batch_size=50,
    )
    loop.install_signal_handlers()
    print("ready", flush=True)
    stats = loop.run()
    print(f"clean-exit consumed={stats.consumed} commits={stats.commits}", flush=True)


if __name__ == "__main__":
    main()
