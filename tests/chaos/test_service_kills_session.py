"""kill -9 of every stream service with the product's group session (6 s), aimed at the
window between a batch's output flush and its offset commit.

The same scenarios and checks as ``test_service_kills.py`` (see its docstring: a kill is
survived only by what the service produced afterwards), with fewer kills since each one
costs a session timeout: one at start-up, two at the ``commit-window`` marker a worker
writes after its output is flushed and before its offsets are committed (the worker holds
that commit :data:`chaos.kills.COMMIT_HOLD_S`, so the kill lands in the window; the test
checks that each aimed kill saw its marker). Then the next life must redo exactly the
uncommitted work: reports again (drift), the same version re-announced (train), pairs
and promotions not doubled (shadow), each event learned once in the state (online), rows
not lost and labels matched (ingest).

A soak (``-m soak``, ``make soak``): each kill costs a session timeout, and
``test_service_kills.py`` runs the same scenarios in ``make test``.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from chaos import kills
from chaos import test_service_kills as scenarios
from chaos.ledger import FaultRecorder
from chaos.workers.common import PRODUCT_SESSION_TIMEOUT_MS
from streams.settings import Settings

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.slow, pytest.mark.soak]

SEED = scenarios.SEED + 100
AIMED = 2  # kills per service at the commit window


def session_plan(seed: int, second: str = kills.COMMIT_WINDOW) -> list[kills.KillPoint]:
    """One kill during start-up and group join, then ``AIMED`` in the commit window."""
    rng = random.Random(seed)
    plan = [kills.KillPoint(kills.START, rng.uniform(*kills.START_DELAY_S))]
    plan += [kills.KillPoint(second if n == 0 else kills.COMMIT_WINDOW,
                             rng.uniform(*kills.COMMIT_DELAY_S)) for n in range(AIMED)]
    return plan


def _check_aim(lives: kills.Lives) -> None:
    planned, hit = lives.aimed(kills.COMMIT_WINDOW)
    assert hit == planned, f"{planned - hit} of {planned} commit-window kills missed the window"


def _fault(service: str) -> str:
    return f"{service} kill -9, 6 s session (start-up, between output flush and commit)"


@pytest.mark.timeout(240)
def test_drift_monitor_kill9_with_product_session(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    _check_aim(scenarios.drift_scenario(settings, tmp_path, ledger, session_plan(SEED),
                                        PRODUCT_SESSION_TIMEOUT_MS, _fault("drift monitor"),
                                        SEED))


@pytest.mark.timeout(300)
def test_training_worker_kill9_with_product_session(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    _check_aim(scenarios.train_scenario(settings, tmp_path, ledger, session_plan(SEED + 1),
                                        PRODUCT_SESSION_TIMEOUT_MS, _fault("training worker"),
                                        SEED + 1))


@pytest.mark.timeout(360)
def test_shadow_service_kill9_with_product_session(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    _check_aim(scenarios.shadow_scenario(settings, tmp_path, ledger, session_plan(SEED + 2),
                                         PRODUCT_SESSION_TIMEOUT_MS, _fault("shadow service"),
                                         SEED + 2))


@pytest.mark.timeout(240)
def test_online_service_kill9_with_product_session(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    _check_aim(scenarios.online_scenario(settings, tmp_path, ledger, session_plan(SEED + 3),
                                         PRODUCT_SESSION_TIMEOUT_MS, _fault("online service"),
                                         SEED + 3))


@pytest.mark.timeout(240)
def test_ingest_service_kill9_with_product_session(
    settings: Settings, tmp_path: Path, spawner: float, ledger: FaultRecorder
) -> None:
    _check_aim(scenarios.ingest_scenario(settings, tmp_path, ledger, session_plan(SEED + 4),
                                         PRODUCT_SESSION_TIMEOUT_MS, _fault("ingest service"),
                                         SEED + 4))
