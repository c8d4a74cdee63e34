"""The README's command-line walk-through, run as written.

Every ```bash block preceded by ``<!-- readme-test -->`` in README.md is taken from the
README itself and run, in order, in one shell, in a fresh directory holding copies of
``feature_repo/`` and ``examples/`` (as the README says), against the embedded broker
that the README's own ``driftloop broker start`` starts. Only the environment points
the broker at a free port. Each command must exit with 0, or with the status its
``# exits N`` comment announces, and the key output of each step is checked, so the
README and the command line cannot drift apart again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.features.feast_repo import copy_repo
from streams.broker import EmbeddedBroker, free_port
from streams.settings import TOPIC_NAMES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- readme-test -->"
EXITS = re.compile(r"#\s*exits (\d+)")


@dataclass(frozen=True)
class Command:
    text: str
    expected_exit: int


def readme_commands(text: str) -> list[Command]:
    """The commands of every marked bash block, continuation lines joined."""
    blocks = re.findall(MARKER + r"\s*\n```bash\n(.*?)```", text, flags=re.DOTALL)
    commands: list[Command] = []
    for block in blocks:
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            full = (pending + line).strip()
            pending = ""
            if not full or full.startswith("#"):
                continue
            match = EXITS.search(full)
            commands.append(Command(full, int(match.group(1)) if match else 0))
    return commands


def test_the_extractor_reads_marked_blocks_only() -> None:
    text = ("```bash\nnot this\n```\n" + MARKER + "\n```bash\na --x \\\n  --y  # exits 3\n"
            "# a comment\nb\n```\n")
    assert readme_commands(text) == [Command("a --x    --y  # exits 3", 3), Command("b", 0)]


def _script(commands: list[Command], out: Path) -> str:
    lines = []
    for i, command in enumerate(commands):
        lines.append(f"started=$(date +%s.%N)\n{{ {command.text}\n}} > {out}/{i}.out "
                     f"2> {out}/{i}.err; echo $? > {out}/{i}.rc; "
                     f"echo \"$started $(date +%s.%N)\" > {out}/{i}.seconds")
    return "\n".join(lines) + "\n"


@dataclass
class Ran:
    command: Command
    rc: int
    out: str
    err: str
    seconds: float


def _find(ran: list[Ran], *words: str) -> Ran:
    hits = [r for r in ran if all(w in r.command.text for w in words)]
    assert len(hits) == 1, (words, [r.command.text for r in hits])
    return hits[0]


@pytest.mark.timeout(600)  # about 25 child commands, each importing Feast and torch
def test_every_readme_command_runs_as_written(tmp_path: Path) -> None:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    documented = ["broker start", "topics create", "demo roundtrip", "data generate",
                  "snapshot create", "train --model", "models list", "models show",
                  "models diff", "models rollback", "drift check --model",
                  "drift check --reference", "predict --model", "report --model",
                  "data columns", "data load", "data send", "broker stop"]
    for name in documented:
        assert any(name in c.text for c in commands), f"README tests no `{name}`"

    work = tmp_path / "work"
    copy_repo(work / "feature_repo")
    shutil.copytree(README.parent / "examples", work / "examples",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "OTEL_"))}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "DRIFTLOOP_BROKER__PORT": str(port),
        "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "PYTHONWARNINGS": "ignore",
        "COLUMNS": "160",
    })
    script = tmp_path / "readme.sh"
    script.write_text(_script(commands, out))
    try:
        subprocess.run(["bash", str(script)], cwd=work, env=env, timeout=600, check=False)
    finally:  # the README stops its broker; make sure of it even when a step failed
        EmbeddedBroker(work / ".driftloop", port=port).stop()

    ran = []
    for i, command in enumerate(commands):
        rc_file = out / f"{i}.rc"
        assert rc_file.exists(), f"never ran: {command.text}"
        start, end = (float(t) for t in (out / f"{i}.seconds").read_text().split())
        ran.append(Ran(command, int(rc_file.read_text()), (out / f"{i}.out").read_text(),
                       (out / f"{i}.err").read_text(), end - start))
    for r in ran:  # seen with pytest -s: where the time goes
        print(f"{r.seconds:6.1f}s rc={r.rc} {r.command.text[:90]}")
    for r in ran:
        assert r.rc == r.command.expected_exit, (
            f"`{r.command.text}` exited {r.rc}, expected {r.command.expected_exit}\n"
            f"stdout: {r.out[-2000:]}\nstderr: {r.err[-2000:]}")
        assert "Traceback" not in r.out + r.err, r.command.text

    assert f"broker running on 127.0.0.1:{port}" in _find(ran, "broker start").err
    listed = _find(ran, "topics list").out
    assert all(t in listed for t in ("features", "labels", "drift.reports", "deadletter"))
    trip = _find(ran, "demo roundtrip").out
    assert "round trip OK" in trip and f"deleted {len(TOPIC_NAMES)} topics under roundtrip-" in trip
    assert "fraud v1 is champion" in _find(ran, "train --model").err
    assert "champion" in _find(ran, "models list --model fraud").out
    assert "training_snapshot_id" in _find(ran, "models show").out

    drifted = _find(ran, "drift check --model fraud --input window.parquet")
    assert "comparing 17 features of fraud's FeatureService" in drifted.err
    assert "DRIFTED" in drifted.out
    calm = _find(ran, "drift check --model fraud --input calm.parquet")
    assert "DRIFTED" not in calm.out and " ok " in calm.out
    by_file = _find(ran, "drift check --reference")
    assert "left out (ids, times, labels): event_id, card_id, event_timestamp" in by_file.err
    windows = [json.loads(line) for line in by_file.out.splitlines()]
    assert [w["report"]["window"]["n_events"] for w in windows] == [1000, 1000, 1000]
    assert all(w["report"]["drifted"] for w in windows)
    assert [w["trigger"]["outcome"] for w in windows] == ["streak", "fire", "streak"]

    answer = json.loads(_find(ran, "predict --model fraud").out)
    assert 0.0 <= answer["champion"]["proba"] <= 1.0 and answer["champion"]["version"] == 1
    assert (work / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "nothing older" in _find(ran, "models rollback").err
    assert "2000 feature and 2000 label events" in _find(ran, "--live-events 2000").err
    assert "is_phishing\tlabel\trequired" in _find(ran, "data columns").out
    assert "loaded 2000 events (2000 labelled) for phishing" in _find(ran, "data load").err
    assert "sent 1000 feature and 1000 label events for phishing" in _find(ran, "data send").err
    assert "stopped" in _find(ran, "broker stop").err


def test_the_readme_json_examples_are_valid() -> None:
    text = README.read_text(encoding="utf-8")
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL):
        json.loads(block)
    for features in re.findall(r"--features '([^']*)'", text):
        assert isinstance(json.loads(features), dict), features
    for body in re.findall(r"-d '([^']*)'", text):
        json.loads(body)


def test_the_readme_configuration_example_loads(tmp_path: Path) -> None:
    from streams.settings import load_settings

    blocks = re.findall(r"<!-- readme-config -->\s*\n```yaml\n(.*?)```",
                        README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) == 1
    path = tmp_path / "driftloop.yaml"
    path.write_text(blocks[0])
    settings = load_settings(path)
    fraud = settings.model("fraud")
    assert fraud.drift.critical_features == frozenset({"channel"})
    assert fraud.training.max_steps == 2000 and not settings.faults.crash_after_alias_move
    assert settings.feast.yaml_path() == Path("/app/feature_repo/feature_store.real.yaml")
