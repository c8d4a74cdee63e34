"""Five services in one process, as ``driftloop run ingest drift train shadow online``.

The real :class:`IngestService` over the test's embedded Feast repo, the
:class:`DriftMonitor` over a static reference of the ``fraud`` model, the
:class:`TrainingWorker`, the :class:`ShadowService` and the online service built by its
``driftloop run`` factory with the fraud spec inline, run together by
:func:`services.cli.services.run_all` (one thread each, one shared HTTP endpoint).

Run as ``python -m chaos.workers.poison ARGS_JSON``; ``args``: bootstrap, prefix,
state_dir, registry, repo, project, http_port, deadline_s. Stops on SIGTERM.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

MODEL = "fraud"
WINDOW_EVENTS = 20


def online_spec(spec: Any) -> dict[str, Any]:
    """The model's spec in the online section's inline form."""
    return {"entity": spec.entity,
            "features": [{"name": f.name, "kind": f.kind} for f in spec.features]}


def main(args: dict[str, Any]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    import services.features.feast_repo as feast_repo
    from services.cli.services import run_all
    from services.drift.profile import build_reference_profile
    from services.drift.references import ModelReference, StaticReferences
    from services.drift.service import DriftMonitor
    from services.features.ingest_service import IngestService
    from services.observability.setup import in_memory_telemetry
    from services.online.service import build as build_online
    from services.shadow.service import ShadowService
    from services.training.synthetic import synthetic_frame
    from services.training.worker import TrainingWorker
    from streams.settings import load_settings

    store = feast_repo.open_repo("embedded", repo_path=args["repo"], project=args["project"])
    spec = feast_repo.load_layout(store, MODEL).spec
    drift = {"window_events": WINDOW_EVENTS, "window_seconds": 3600, "ks_method": "asymp",
             "idle_flush_seconds": 1.0}
    settings = load_settings(
        kafka={"bootstrap_servers": args["bootstrap"]},
        topics={"prefix": args["prefix"], "partitions": 3},
        state_dir=Path(args["state_dir"]), registry_uri=str(args["registry"]),
        feast={"repo": Path(args["repo"])},
        models={MODEL: {"drift": drift, "online": {"spec": online_spec(spec)}}},
        http={"host": "127.0.0.1", "port": args["http_port"],
              "request_deadline_s": args["deadline_s"]},
    )
    reference = ModelReference(
        spec=spec, profile=build_reference_profile(synthetic_frame(2_000, spec), spec,
                                                   "snap-poison"),
        champion_version=1,
    )

    def telemetry(name: str) -> Any:
        return in_memory_telemetry(f"driftloop-{name}")

    services = [
        IngestService(settings, store=store, models=[MODEL], flush_rows=200,
                      flush_interval_s=0.3, telemetry=telemetry("ingest")),
        DriftMonitor(settings, telemetry=telemetry("drift"),
                     references=StaticReferences({MODEL: reference})),
        TrainingWorker(settings, telemetry=telemetry("train")),
        ShadowService(settings, telemetry=telemetry("shadow")),
        build_online(settings, telemetry=telemetry("online"), snapshot_every=50,
                     snapshot_interval_s=0.5, batch_size=200),
    ]
    print("ready", flush=True)
    return run_all(services)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
