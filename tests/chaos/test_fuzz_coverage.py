"""Coverage-guided fuzzing (atheris, libFuzzer) of the contract edge, for a fixed number
of inputs: every input, decoded as every event type and validated, becomes an event or a
classified dead-letter reason; any other exception is a crash that fails the test with the
input. The bounded run is part of ``make test`` (seconds); the soak run (``-m soak``)
takes minutes. The inputs the fuzzer keeps are also sent to every service through the
broker by ``test_fuzz_consumers.py`` ("handled or dead-lettered, the loop alive").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chaos.fuzz.runner import run_codec_fuzzer
from chaos.ledger import FaultRecorder

pytestmark = [pytest.mark.chaos]

SEED = 20261124
BOUNDED_RUNS = 50_000  # about 5 s here
SOAK_RUNS = 2_000_000


def _fuzz(tmp_path: Path, ledger: FaultRecorder, runs: int, name: str) -> None:
    result = run_codec_fuzzer(tmp_path, runs=runs, seed=SEED, timeout_s=1800)
    coverage = re.findall(r"cov: (\d+) ft: (\d+)", result.output)
    kept = len(result.corpus()) if result.corpus_dir.exists() else 0
    ledger.fault(name, injected=runs, survived=result.done if result.ok else 0, lost=0,
                 detail=(f"atheris/libFuzzer seed {SEED}: {result.done} of {runs} inputs run, "
                         f"exit {result.returncode}; final coverage "
                         f"{coverage[-1] if coverage else '?'} (edges, features); {kept} "
                         f"inputs kept in the corpus"))
    assert result.returncode == 0, result.output[-4000:]
    assert result.done == runs, result.output[-2000:]
    assert coverage and int(coverage[-1][0]) > 0, "the target ran no instrumented code"


@pytest.mark.timeout(300)
def test_codec_survives_coverage_guided_fuzzing(tmp_path: Path, ledger: FaultRecorder) -> None:
    _fuzz(tmp_path, ledger, BOUNDED_RUNS, "coverage-guided fuzz of decode + validation "
          "(bounded)")


@pytest.mark.soak
@pytest.mark.timeout(1900)
def test_codec_survives_coverage_guided_fuzzing_soak(tmp_path: Path,
                                                     ledger: FaultRecorder) -> None:
    _fuzz(tmp_path, ledger, SOAK_RUNS, "coverage-guided fuzz of decode + validation (soak)")
