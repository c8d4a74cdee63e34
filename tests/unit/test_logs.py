"""Log lines go to the stderr of the moment, as one JSON object each off a terminal."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from services.cli.logs import configure_logging


@pytest.fixture
def fresh_root() -> logging.Logger:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, getattr(root, "_driftloop_configured", None))
    root.handlers = []
    if hasattr(root, "_driftloop_configured"):
        del root._driftloop_configured  # type: ignore[attr-defined]
    yield root
    root.handlers, level, flag = saved[0], saved[1], saved[2]
    root.setLevel(level)
    if flag is None and hasattr(root, "_driftloop_configured"):
        del root._driftloop_configured  # type: ignore[attr-defined]
    elif flag is not None:
        root._driftloop_configured = flag  # type: ignore[attr-defined]


def test_a_command_run_with_a_swapped_stderr_leaves_logging_usable(
    fresh_root: logging.Logger, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An in-process command configures logging while stderr is a temporary stream
    that is closed afterwards; a service thread logging later must still write (a
    handler bound to the old stream prints '--- Logging error ---' and loses the line)."""
    temporary = io.StringIO()
    monkeypatch.setattr(sys, "stderr", temporary)
    configure_logging()
    logging.getLogger("driftloop.test").info("during %s", "the command")
    during = temporary.getvalue()
    temporary.close()
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)
    logging.getLogger("driftloop.test").info("after %s", "the command")
    assert json.loads(during)["message"] == "during the command"
    line = json.loads(later.getvalue())
    assert (line["message"], line["level"], line["logger"]) == (
        "after the command", "info", "driftloop.test")
