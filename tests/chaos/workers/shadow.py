"""A shadow-service life: the real :class:`ShadowService` over a local registry of toy
logistic models (``p = sigmoid(w * x)`` on one feature), policies from the settings.

``args``: bootstrap, prefix, state_dir, registry, markers, log, shadow and rollback
(policy options), ``final`` (run until the input is quiet, then exit 0). A marker line
is written after every handled non-empty batch (before its commit).
"""

from __future__ import annotations

from typing import Any

import torch

from chaos.workers.common import MarkedService, Markers, hold_commits, settings_for, start_life
from services.model.preprocessing import FORMAT_VERSION
from services.model.tabular import TabularModel
from services.observability.setup import in_memory_telemetry
from services.registry.manifest import Lineage
from services.registry.store import ModelRegistry
from services.shadow.service import ShadowService
from streams.consumer import Inbound

MODEL = "toy"
QUIET_S = 3.0


def register_toy(registry: ModelRegistry, weight: float, parent: int | None,
                 request_id: str | None = None) -> tuple[int, str]:
    """Register ``p = sigmoid(weight * x)`` on one numeric feature ``x``; returns (version,
    manifest sha256). The lineage's request id is ``req-w<weight>`` unless given (two
    versions of one weight need two ids: a repeated request id yields the first)."""
    module = TabularModel(2, [], [], [], 0.0)
    with torch.no_grad():
        module.mlp[0].weight.copy_(torch.tensor([[weight, 0.0]]))
        module.mlp[0].bias.zero_()
    reg = registry.register(
        MODEL, state_dict=module.state_dict(),
        preprocessing={"format": FORMAT_VERSION, "numeric": [{"name": "x", "mean": 0.0,
                       "std": 1.0}], "categorical": []},
        model_meta=module.meta,
        lineage=Lineage(training_snapshot_id=f"snap-{weight}", parent_version=parent,
                        request_id=request_id or f"req-w{weight}"),
        hyperparameters={}, metrics={}, seeds={},
    )
    return reg.version, reg.manifest_sha256


class MarkedShadow(MarkedService, ShadowService):
    """The service, writing a marker after each handled batch."""

    def batch_marker(self, batch: list[Inbound[Any]]) -> str:
        return f"batch {len(batch)} champion {self.book.champions.get(MODEL)}"

    def settled(self) -> bool:
        return self.quiet_for(QUIET_S)


def main(args: dict[str, Any]) -> None:
    start_life(args)
    settings = settings_for(args, {MODEL: {"shadow": args["shadow"],
                                           "rollback": args["rollback"]}})
    markers = Markers(args["markers"])
    service = MarkedShadow(settings, telemetry=in_memory_telemetry("chaos-shadow"),
                           recover_every_s=2.0, markers=markers, batch_size=500)
    hold_commits(service.loop, markers, float(args.get("commit_hold_s", 0.0)))
    if args.get("final"):
        service.run(until=service.settled)
    else:
        service.run()
