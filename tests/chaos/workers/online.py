"""An online-service life: built by ``services.online.service.build`` (the ``driftloop run
online`` factory) with the Agrawal model's spec inline (no Feast).

``args``: bootstrap, prefix, state_dir, registry, markers, log, ``expected`` (the final
life runs until its state holds that many learned events, snapshots and exits 0). Each
learned mini-batch appends its event ids to the marker file (fsynced, before the batch's
offsets can be committed); the final life also writes ``learned <n>`` as its last line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import river  # noqa: F401 - imported by the fork server, not by each life

from chaos.workers.common import Markers, hold_commits, settings_for, start_life
from services.observability.setup import in_memory_telemetry
from services.online.join import Joined
from services.online.learner import Outcome
from services.online.service import build

MODEL = "agrawal"
CATEGORICAL = ("elevel", "car", "zipcode")
NAMES = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")
SPEC = {"entity": "id", "features": [
    {"name": n, "kind": "categorical" if n in CATEGORICAL else "numeric"} for n in NAMES]}


def main(args: dict[str, Any]) -> None:
    start_life(args)
    settings = settings_for(args, {MODEL: {"online": {"spec": SPEC}}})
    markers = Markers(args["markers"])

    def record(model: str, joined: Sequence[Joined], outcomes: Sequence[Outcome]) -> None:
        markers.mark("".join(f"{j.event_id}\n" for j in joined))

    service = build(settings, snapshot_every=300, snapshot_interval_s=1.0, batch_size=200,
                    telemetry=in_memory_telemetry("chaos-online"), on_learned=record)
    hold_commits(service.loop, markers, float(args.get("commit_hold_s", 0.0)))
    learner = service.state.learners[MODEL]
    if args.get("final"):
        expected = int(args["expected"])
        service.run(until=lambda: learner.learned >= expected, idle_timeout_s=60)
        service.snapshot()
        markers.mark(f"learned {learner.learned} redelivered {service.redelivered}")
    else:
        service.run()
