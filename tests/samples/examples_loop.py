"""The loop of one example (``examples/``), run as a user would: shared by the per-example
integration tests (one file per example, so parallel test workers take them apart).

Per example: its Feast file is copied into a Feast repository and applied, its
``prepare.py`` writes the history and live files, ``driftloop data load`` loads the
history, ``snapshot create`` and ``train`` make champion v1 (all through the command
line, configured by a YAML file holding the example's ``models`` section), then the
services (ingest, drift, train, shadow: the demo's machinery, in this process) run on
the embedded broker while ``driftloop data send`` (a child process, as a user runs it)
streams the live file, whose data shifts part-way. The loop must close: drift after the
shift and not before it, a retrain request, a candidate, a ``promote`` verdict measured
with the task's own loss (``log_loss``, ``cross_entropy``, ``squared_error``), and v2
promoted.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from services.cli.main import app
from services.cli.services import build_service
from services.demo.loop import STAGES, Observed, TopicWatcher, windows_after_promotion
from services.features.feast_repo import copy_repo
from services.model.task import Task
from services.registry.store import ModelRegistry
from streams.contracts import ShadowVerdict
from streams.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "drift", "train", "shadow")
HISTORY, LIVE, SHIFT_AT = 2000, 30_000, 1000
QUIET_WINDOWS = 2  # windows against the promoted champion that must not drift
RATE = 400.0  # live events per wall-clock second
LOOP_TIMEOUT_S = 200.0


@dataclass(frozen=True)
class Example:
    folder: str
    model: str
    loss: str


EXAMPLES = {
    "binary": Example("binary", "phishing", "log_loss"),
    "multiclass": Example("multiclass", "segments", "cross_entropy"),
    "regression": Example("regression", "friedman", "squared_error"),
}


class Watcher(TopicWatcher):
    """The demo's topic watcher, keeping every verdict too."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.verdicts: list[ShadowVerdict] = []

    def _fold(self, event: Any, headers: Any, observed: Observed) -> None:  # type: ignore[override]
        if isinstance(event, ShadowVerdict):
            self.verdicts.append(event)
        TopicWatcher._fold(event, headers, observed)


def _config(tmp_path: Path, settings: Settings, example: Example) -> Path:
    """A driftloop.yaml: this test's broker, topics and stores plus the example's section."""
    section = yaml.safe_load((ROOT / "examples" / example.folder / "driftloop.yaml").read_text())
    path = tmp_path / "driftloop.yaml"
    path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": settings.kafka.bootstrap_servers},
        "topics": {"prefix": settings.topics.prefix, "partitions": settings.topics.partitions},
        "state_dir": str(tmp_path / "state"),
        "registry_uri": str(tmp_path / "registry"),
        "feast": {"repo": str(tmp_path / "feature_repo"), "variant": "embedded"},
        "models": section["models"],
    }))
    return path


def _cli(config: Path, *args: str) -> Any:
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:  # the command line logs to the runner's stream, closed once it returns
        result = CliRunner().invoke(app, ["-c", str(config), *args])
    finally:
        root.handlers = handlers
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result


def close_the_loop(
    example: Example, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Take ``example`` through the whole loop; assert every stage and the verdict.

    Returns the configuration file the loop ran with (for ``driftloop report``)."""
    monkeypatch.syspath_prepend(str(ROOT))  # `examples.*` (the regression factory too)
    for name in [k for k in os.environ if k.startswith("DRIFTLOOP_")]:
        monkeypatch.delenv(name)
    folder = ROOT / "examples" / example.folder
    repo = copy_repo(tmp_path / "feature_repo")
    shutil.copy(folder / f"{example.model}.py", repo)
    config = _config(tmp_path, settings, example)
    data = tmp_path / "data"
    prepare = importlib.import_module(f"examples.{example.folder}.prepare")
    prepare.main(["--out", str(data), "--history", str(HISTORY), "--live", str(LIVE),
                  "--shift-at", str(SHIFT_AT), "--seed", "1"])
    history = pd.read_parquet(data / "history.parquet")
    live = pd.read_parquet(data / "live.parquet")
    shift_time = live["event_timestamp"].iloc[SHIFT_AT]

    loaded = _cli(config, "data", "load", "--model", example.model,
                  str(data / "history.parquet"))
    assert f"loaded {HISTORY} events ({HISTORY} labelled) for {example.model}" in loaded.output
    start = history["event_timestamp"].min().isoformat()
    end = (history["event_timestamp"].max() + pd.Timedelta("1s")).isoformat()
    snapshot = _cli(config, "snapshot", "create", "--model", example.model,
                    "--start", start, "--end", end).stdout.strip().splitlines()[-1]
    assert snapshot.startswith(f"{example.model}-")
    trained = _cli(config, "train", "--model", example.model, "--snapshot", snapshot)
    assert f"{example.model} v1 is champion" in trained.output

    loaded_settings = load_settings(config)
    services = {name: build_service(name, loaded_settings) for name in SERVICES}
    threads = [threading.Thread(target=s.run, name=n, daemon=True) for n, s in services.items()]
    for thread in threads:
        thread.start()
    watcher = Watcher(loaded_settings)
    observed = Observed()
    sender = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "-c", str(config), "data", "send",
         "--model", example.model, str(data / "live.parquet"), "--rate", str(RATE)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    started = time.monotonic()
    try:
        while (time.monotonic() - started < LOOP_TIMEOUT_S
               and len(windows_after_promotion(observed)) < QUIET_WINDOWS):
            watcher.poll(observed)
            assert all(t.is_alive() for t in threads), "a service stopped"
            if sender.poll() is not None:
                assert sender.returncode == 0, sender.stdout.read() if sender.stdout else ""
    finally:
        sender.terminate()
        sender.wait(30)
        watcher.close()
        for service in services.values():
            service.stop()
        for thread in threads:
            thread.join(30)
    took = time.monotonic() - started
    missing = [s for s in STAGES[:-1] if s not in observed.stages]  # the demo marks the last
    assert not missing, f"after {took:.0f}s: missing {missing}; seen {observed.stages}"
    # the promoted champion's reference is the post-change data: its windows are quiet
    after = windows_after_promotion(observed)[:QUIET_WINDOWS]
    assert len(after) == QUIET_WINDOWS and not any(r.drifted for r in after), [
        (r.window.end_time, r.champion_version, r.drifted_share) for r in after]
    before = [r for r in observed.reports
              if r.model == example.model and r.window.end_time < shift_time]
    assert before and not any(r.drifted for r in before), "drift before the shift"
    promoted = [v for v in watcher.verdicts if v.decision == "promote"]
    assert promoted, watcher.verdicts
    verdict = promoted[0]
    assert verdict.metric == example.loss
    assert verdict.candidate_metric < verdict.champion_metric
    assert (verdict.champion, verdict.candidate) == (1, 2)
    declared = loaded_settings.model(example.model)
    manifest = ModelRegistry(loaded_settings.registry_uri).manifest(example.model, 2)
    assert Task.from_manifest(manifest.task) == declared.task
    if declared.factory:  # the user's module, rebuilt from its factory on every load
        assert manifest.architecture.get("factory") == declared.factory
    print(f"{example.folder}: loop closed in {took:.0f}s of live stream; "
          f"{example.loss} {verdict.champion_metric:.4f} -> {verdict.candidate_metric:.4f}")
    return config


def write_report(config: Path, example: Example, out: Path) -> Path:
    """``driftloop report`` of the example's model after its loop, as a user runs it."""
    result = _cli(config, "report", "--model", example.model, "--out", str(out))
    assert f"wrote {out}" in result.output
    return out
