"""A shadow-service process that dies (SIGKILL) right after its first champion move.

Usage: shadow_crash_worker.py SETTINGS_JSON

SETTINGS_JSON holds ``bootstrap``, ``prefix``, ``state_dir``, ``registry_uri`` and
``models`` (the per-model policies). The service is the one ``driftloop run shadow``
builds, with a fault injected through its ``after_alias_moved`` seam: the process is
killed between the alias move and the verdict/promotion events, the window the
promotion outbox exists for.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from services.shadow.promotion import PromotionIntent
from services.shadow.service import ShadowService
from streams.settings import load_settings


def _die(intent: PromotionIntent) -> None:
    print(f"alias moved v{intent.previous_champion} -> v{intent.new_champion}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    args = json.loads(sys.argv[1])
    settings = load_settings(
        kafka={"bootstrap_servers": args["bootstrap"]}, topics={"prefix": args["prefix"]},
        state_dir=Path(args["state_dir"]), registry_uri=args["registry_uri"],
        models=args["models"],
    )
    ShadowService(settings, after_alias_moved=_die).run(idle_timeout_s=60)


if __name__ == "__main__":
    main()
