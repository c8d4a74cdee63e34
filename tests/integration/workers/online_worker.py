"""An online-service process for the restart test: learns, records what it learned, may be killed.

Usage: online_worker.py BOOTSTRAP PREFIX STATE_DIR OUT_FILE EXPECTED

Builds the service through ``services.online.service.build`` (the ``driftloop run online``
factory) with the Agrawal model's spec inline in the settings (no Feast), snapshots
every 400 learned events, and appends the id of every event it learns to OUT_FILE
(fsynced per batch, before the batch's offsets can be committed). It runs until its
state holds EXPECTED learned events, takes a final snapshot and prints one JSON line of
counts; the test SIGKILLs the first instance mid-stream.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from services.observability.setup import in_memory_telemetry
from services.online.join import Joined
from services.online.learner import Outcome
from services.online.service import build
from streams.settings import load_settings

CATEGORICAL = ("elevel", "car", "zipcode")
NAMES = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")
SPEC = {"entity": "id", "features": [
    {"name": n, "kind": "categorical" if n in CATEGORICAL else "numeric"} for n in NAMES]}


def main() -> None:
    bootstrap, prefix, state_dir, out_file, expected = sys.argv[1:6]
    settings = load_settings(
        kafka={"bootstrap_servers": bootstrap}, topics={"prefix": prefix},
        state_dir=Path(state_dir), registry_uri=str(Path(state_dir) / "registry"),
        models={"agrawal": {"online": {"spec": SPEC}}},
    )
    out = open(out_file, "a")  # noqa: SIM115 - held for the life of the process

    def record(model: str, joined: Sequence[Joined], outcomes: Sequence[Outcome]) -> None:
        out.write("".join(f"{j.event_id}\n" for j in joined))
        out.flush()
        os.fsync(out.fileno())

    service = build(settings, snapshot_every=400, snapshot_interval_s=3600, batch_size=300,
                    telemetry=in_memory_telemetry("online-worker"), on_learned=record)
    learner = service.state.learners["agrawal"]
    print(json.dumps({"ready": True, "restored_learned": service.restored_learned}), flush=True)
    service.run(until=lambda: learner.learned >= int(expected), idle_timeout_s=60)
    service.snapshot()
    print(json.dumps({
        "learned": learner.learned, "restored_learned": service.restored_learned,
        "redelivered": service.redelivered,
        "join_duplicates": service.state.join.counters.duplicates,
    }), flush=True)


if __name__ == "__main__":
    main()
