"""Logging: readable in a terminal, one JSON object per line everywhere else."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonLineFormatter(logging.Formatter):
    """Structured log lines for collectors: time, level, logger, message, extras."""

    _skip = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._skip})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, so a command run
    in-process with its stderr swapped for a while (a test runner, a redirect) does not
    leave the handler writing to a closed stream afterwards."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        """The stream is always the current ``sys.stderr``."""


def configure_logging(level: int = logging.INFO) -> None:
    """Rich output on a terminal, JSON lines otherwise; idempotent."""
    root = logging.getLogger()
    if getattr(root, "_driftloop_configured", False):
        root.setLevel(level)
        return
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=True)
    else:
        handler = CurrentStderrHandler()
        handler.setFormatter(JsonLineFormatter())
    root.handlers = [handler]
    root.setLevel(level)
    root._driftloop_configured = True  # type: ignore[attr-defined]
    # librdkafka's own chatter stays at warning unless debugging.
    logging.getLogger("feast").setLevel(max(level, logging.WARNING))
