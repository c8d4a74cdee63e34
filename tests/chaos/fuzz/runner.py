"""Runs a libFuzzer target (:mod:`chaos.fuzz.codec_target`) as its own process.

libFuzzer ends the process when it is done or finds a crash, so the target never runs
inside pytest: the caller gets the exit status, the number of runs libFuzzer reported
(``Done N runs``), its output, and the corpus it kept (inputs that reached new code).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MAX_LEN = 4096
_DONE = re.compile(r"^Done (\d+) runs", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class FuzzRun:
    """One fuzzer process: asked ``runs``, done ``done`` (from its own report)."""

    runs: int
    returncode: int
    done: int
    output: str
    corpus_dir: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.done >= self.runs

    def corpus(self) -> list[bytes]:
        """The kept inputs, in a stable order."""
        return [p.read_bytes() for p in sorted(self.corpus_dir.iterdir()) if p.is_file()]


def run_codec_fuzzer(workdir: Path, *, runs: int, seed: int, timeout_s: float = 600) -> FuzzRun:
    """Fuzz the contract edge for exactly ``runs`` inputs from the seed corpus."""
    corpus = workdir / "corpus"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    module = [sys.executable, "-m", "chaos.fuzz.codec_target"]
    subprocess.run([*module, "--write-seeds", str(corpus)], check=True, env=env, cwd=workdir,
                   timeout=120)
    result = subprocess.run(
        [*module, f"-runs={runs}", f"-seed={seed}", f"-max_len={MAX_LEN}",
         # no leak check: under load libFuzzer's "more mallocs than frees" test re-runs an
         # input and counts it, so "Done" says runs + 1 (llvm-project issue 66331, and
         # LLVM's own fix for its flaky -runs test, PR 96914, is this flag); a Python
         # target's native allocations say nothing about leaks in the code under test
         "-detect_leaks=0",
         f"-artifact_prefix={workdir}/", "-print_final_stats=1", str(corpus)],
        env=env, cwd=workdir, capture_output=True, text=True, timeout=timeout_s,
    )
    output = result.stdout + result.stderr
    done = _DONE.search(output)
    return FuzzRun(runs, result.returncode, int(done[1]) if done else 0, output, corpus)
