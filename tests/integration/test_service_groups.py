"""Every service's consumer group lives under the topic prefix exactly once.

Environments (or test runs) sharing a cluster are told apart by the prefix: the group
of ``driftloop run online`` under prefix ``prod.`` is ``prod.driftloop-online``, the
name dashboards and lag alerts select on.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::RuntimeWarning")]


def _services(settings: Settings, tmp_path: Path) -> dict[str, Any]:
    from chaos.workers import drift as drift_worker
    from chaos.workers import online as online_worker

    from services.drift.references import StaticReferences
    from services.drift.service import DriftMonitor
    from services.features.feast_repo import apply_repo, copy_repo, open_repo
    from services.features.ingest_service import IngestService
    from services.observability.setup import in_memory_telemetry
    from services.online.service import build as build_online
    from services.shadow.service import ShadowService
    from services.training.worker import TrainingWorker

    store = open_repo("embedded", repo_path=copy_repo(tmp_path / "repo"),
                       project=f"t_{uuid.uuid4().hex[:12]}")
    apply_repo(store)
    online = settings.with_models({online_worker.MODEL: {"online": {"spec": online_worker.SPEC}}})
    telemetry = in_memory_telemetry("groups")
    return {
        "ingest": IngestService(settings, store=store, models=["fraud"], telemetry=telemetry),
        "drift": DriftMonitor(settings, telemetry=telemetry, references=StaticReferences(
            {drift_worker.MODEL: drift_worker.reference()})),
        "train": TrainingWorker(settings, telemetry=telemetry),
        "shadow": ShadowService(settings, telemetry=telemetry),
        "online": build_online(online, telemetry=telemetry),
    }


@pytest.mark.timeout(120)
def test_each_group_is_the_prefix_and_the_service_name(settings: Settings,
                                                         tmp_path: Path) -> None:
    services = _services(settings, tmp_path)
    try:
        groups = {name: service.group_id for name, service in services.items()}
    finally:
        for service in services.values():
            service.stop()
            service.run()  # stopped before its first poll: closes its clients
    prefix = settings.topics.prefix
    assert groups == {name: f"{prefix}driftloop-{name}" for name in services}
