"""A training-worker life: the real :class:`TrainingWorker` over a real (embedded) Feast
store and a local registry.

``args``: bootstrap, prefix, state_dir, registry, markers, log, repo and project (the
test's Feast repo), training (config overrides), ``final`` (run until every id in
``request_ids`` is registered and the input is quiet, then exit 0). Marker lines:
``request <request id>`` when a request is taken up, ``done <request id>`` when it was
handled (before its commit), and from the training loop ``train <run> from <step>``,
``checkpoint <step>`` and ``finish <status>``.
"""

from __future__ import annotations

from typing import Any

import feast  # noqa: F401 - imported by the fork server, not by each life
import torch  # noqa: F401

import services.features.feast_repo as feast_repo
import services.features.snapshot
import services.training.progress as progress
import services.training.runner  # noqa: F401
from chaos.workers.common import MarkedService, Markers, hold_commits, settings_for, start_life
from services.observability.setup import in_memory_telemetry
from services.training.worker import TrainingWorker
from streams.consumer import Inbound
from streams.contracts import RetrainRequest

MODEL = "fraud"
QUIET_S = 2.0


class MarkedWorker(MarkedService, TrainingWorker):
    """The worker, writing a marker when it takes up and when it finished a request."""

    def __init__(self, *args: Any, markers: Markers, **kwargs: Any) -> None:
        # The registry's default claim timeout (60 s) stays: a life killed between binding
        # a request id and committing its version left a binding whose writer is gone,
        # which the next life takes over at once.
        super().__init__(*args, markers=markers, **kwargs)
        self.handled = 0

    def batch_marker(self, batch: list[Inbound[Any]]) -> None:
        return None  # requests are marked one by one, below

    def settled(self, request_ids: list[str]) -> bool:
        """Every request registered, and nothing new for a while (the final life)."""
        if not self.quiet_for(QUIET_S):
            return False
        return all(self.registry.find_by_request_id(MODEL, r) is not None for r in request_ids)

    def _handle_request(self, inbound: Inbound[RetrainRequest]) -> bool:
        self.markers.mark(f"request {inbound.event.request_id}")
        done = super()._handle_request(inbound)
        if done:
            self.handled += 1
            self.markers.mark(f"done {inbound.event.request_id}")
        return done


class MarkerProgress:
    """Training progress as marker lines (the test times kills on checkpoints)."""

    def __init__(self, markers: Markers) -> None:
        self.markers = markers

    def start(self, run_id: str, total_steps: int, start_step: int) -> None:
        self.markers.mark(f"train {run_id} from {start_step}")

    def step(self, step: int, loss: float, lr: float) -> None:
        pass

    def evaluate(self, step: int, val_loss: float, best_val_loss: float) -> None:
        pass

    def checkpoint(self, step: int, path: str) -> None:
        self.markers.mark(f"checkpoint {step}")

    def finish(self, status: str, step: int, best_val_loss: float) -> None:
        self.markers.mark(f"finish {status} {step}")


def main(args: dict[str, Any]) -> None:
    start_life(args)
    markers = Markers(args["markers"])
    progress.auto_progress = lambda *_, **__: MarkerProgress(markers)  # type: ignore[assignment]
    settings = settings_for(args, {MODEL: {"training": args["training"]}})
    store = feast_repo.open_repo("embedded", repo_path=args["repo"], project=args["project"])
    worker = MarkedWorker(settings, telemetry=in_memory_telemetry("chaos-train"), store=store,
                          markers=markers)
    hold_commits(worker.loop, markers, float(args.get("commit_hold_s", 0.0)))
    if args.get("final"):
        ids = list(args["request_ids"])
        worker.run(until=lambda: worker.settled(ids))
        print(f"final: handled={worker.handled} stats={worker.stats}")
    else:
        worker.run()
