"""Starting the long-running services, alone or several in one process.

Each service module exposes ``build(settings) -> Service``; this module imports it
only when asked, so one service's dependencies never slow another's start.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
from typing import Protocol

from streams.settings import Settings

log = logging.getLogger(__name__)

SERVICE_FACTORIES: dict[str, str] = {
    "ingest": "services.features.ingest_service:build",
    "drift": "services.drift.service:build",
    "train": "services.training.worker:build",
    "shadow": "services.shadow.service:build",
    "online": "services.online.service:build",
}
SERVICE_NAMES: tuple[str, ...] = tuple(SERVICE_FACTORIES)


class Service(Protocol):
    """A long-running loop that stops gracefully when asked."""

    name: str

    def run(self) -> None:
        """Block until stopped, then commit and close."""

    def stop(self) -> None:
        """Ask :meth:`run` to finish its current batch and return."""


def build_service(name: str, settings: Settings) -> Service:
    """Import and build one service by name."""
    module_name, _, factory = SERVICE_FACTORIES[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, factory)(settings)  # type: ignore[no-any-return]


def run_services(settings: Settings, names: list[str]) -> int:
    """Run the named services until SIGTERM/SIGINT; returns the process exit code."""
    return run_all([build_service(name, settings) for name in names])


def run_all(services: list[Service]) -> int:
    """Run built services, one thread each, until SIGTERM/SIGINT or one fails."""
    errors: list[BaseException] = []

    def stop_all(*_: object) -> None:
        log.info("stopping %s", ", ".join(s.name for s in services))
        for service in services:
            service.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop_all)
        signal.signal(signal.SIGINT, stop_all)

    def guarded(service: Service) -> None:
        try:
            service.run()
        except BaseException as exc:  # reported, and the others are stopped
            log.exception("service %s failed", service.name)
            errors.append(exc)
            stop_all()

    threads = [
        threading.Thread(target=guarded, args=(s,), name=s.name, daemon=True) for s in services
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
    return 1 if errors else 0
