"""A drift-monitor life: the real :class:`DriftMonitor` over a static reference (no Feast).

``args``: bootstrap, prefix, state_dir, registry, markers, log, window (events),
``final`` (run until every window is reported and the stream is quiet, then exit 0).
A marker line is written after every handled non-empty batch (before its commit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from chaos.workers.common import MarkedService, Markers, hold_commits, settings_for, start_life
from services.drift.profile import build_reference_profile
from services.drift.references import ModelReference, StaticReferences
from services.drift.service import DriftMonitor
from services.featurespec import FeatureSpec, ModelSpec
from services.observability.setup import in_memory_telemetry
from streams.consumer import Inbound

MODEL = "m1"
SPEC = ModelSpec(
    model=MODEL, entity="card_id",
    features=(*(FeatureSpec(f"x{i}", "numeric") for i in range(5)),
              FeatureSpec("channel", "categorical")),
)
QUIET_S = 2.5  # the final life stops after this long without input and no open window


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Feature rows: x0..x4 standard normal (x0..x2 shifted by ``shift``), a channel."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {
        f"x{i}": rng.standard_normal(n) + (shift if i < 3 else 0.0) for i in range(5)}
    data["channel"] = rng.choice(["online", "pos", "atm"], size=n, p=[0.5, 0.3, 0.2])
    return pd.DataFrame(data)


def reference() -> ModelReference:
    profile = build_reference_profile(frame(5_000, 0), SPEC, "snap-chaos")
    return ModelReference(spec=SPEC, profile=profile, champion_version=1)


class MarkedMonitor(MarkedService, DriftMonitor):
    """The monitor, writing a marker after each handled batch."""

    def batch_marker(self, batch: list[Inbound[Any]]) -> str:
        return f"batch {len(batch)} windows {self.stats.windows}"

    def settled(self) -> bool:
        """Nothing open, nothing new for a while (the final life's stop condition)."""
        open_rows = sum(m.window.n_open for m in self.monitors.values())
        return open_rows == 0 and self.quiet_for(QUIET_S)


def main(args: dict[str, Any]) -> None:
    start_life(args)
    options = {"window_events": args["window"], "window_seconds": 3600, "ks_method": "asymp",
               "idle_flush_seconds": 1.0}
    settings = settings_for(args, {MODEL: {"drift": options}})
    markers = Markers(args["markers"])
    monitor = MarkedMonitor(settings, telemetry=in_memory_telemetry("chaos-drift"),
                            references=StaticReferences({MODEL: reference()}),
                            markers=markers, batch_size=500)
    hold_commits(monitor.loop, markers, float(args.get("commit_hold_s", 0.0)))
    if args.get("final"):
        monitor.run(until=monitor.settled)
        print(f"final: windows={monitor.stats.windows} requests={monitor.stats.requests}")
    else:
        monitor.run()
