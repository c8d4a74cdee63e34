"""Training progress: a live bar on a terminal, JSON log lines otherwise.

``auto_progress()`` picks a rich progress bar when stderr is a TTY and one JSON object
per line on stderr when it is not (containers, CI, log shippers).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Protocol, TextIO


class ProgressReporter(Protocol):
    """Receives a run's milestones; every method must be cheap."""

    def start(self, run_id: str, total_steps: int, start_step: int) -> None: ...

    def step(self, step: int, loss: float, lr: float) -> None: ...

    def evaluate(self, step: int, val_loss: float, best_val_loss: float) -> None: ...

    def checkpoint(self, step: int, path: str) -> None: ...

    def finish(self, status: str, step: int, best_val_loss: float) -> None: ...


class NullProgress:
    """Reports nothing."""

    def start(self, run_id: str, total_steps: int, start_step: int) -> None:
        pass

    def step(self, step: int, loss: float, lr: float) -> None:
        pass

    def evaluate(self, step: int, val_loss: float, best_val_loss: float) -> None:
        pass

    def checkpoint(self, step: int, path: str) -> None:
        pass

    def finish(self, status: str, step: int, best_val_loss: float) -> None:
        pass


class JsonLinesProgress:
    """One JSON object per line: start, evaluations, checkpoints, finish, and a
    throttled ``step`` line at most every ``step_interval_s`` seconds."""

    def __init__(self, stream: TextIO | None = None, step_interval_s: float = 5.0) -> None:
        self._stream = stream
        self._interval = step_interval_s
        self._last = 0.0
        self._run_id = ""

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, "run_id": self._run_id, **fields}
        stream = self._stream or sys.stderr
        stream.write(json.dumps(record) + "\n")
        stream.flush()

    def start(self, run_id: str, total_steps: int, start_step: int) -> None:
        self._run_id = run_id
        self._emit("train.start", total_steps=total_steps, start_step=start_step)

    def step(self, step: int, loss: float, lr: float) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._emit("train.step", step=step, loss=round(loss, 6), lr=lr)

    def evaluate(self, step: int, val_loss: float, best_val_loss: float) -> None:
        self._emit("train.eval", step=step, val_loss=val_loss, best_val_loss=best_val_loss)

    def checkpoint(self, step: int, path: str) -> None:
        self._emit("train.checkpoint", step=step, path=path)

    def finish(self, status: str, step: int, best_val_loss: float) -> None:
        self._emit("train.finish", status=status, step=step, best_val_loss=best_val_loss)


class RichProgress:
    """A rich progress bar with the latest loss and validation loss."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]train[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task: Any = None
        self._val = float("nan")

    def start(self, run_id: str, total_steps: int, start_step: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=total_steps, completed=start_step, info=run_id
        )

    def step(self, step: int, loss: float, lr: float) -> None:
        info = f"loss {loss:.4f} val {self._val:.4f} lr {lr:.2e}"
        self._progress.update(self._task, completed=step, info=info)

    def evaluate(self, step: int, val_loss: float, best_val_loss: float) -> None:
        self._val = val_loss

    def checkpoint(self, step: int, path: str) -> None:
        pass

    def finish(self, status: str, step: int, best_val_loss: float) -> None:
        self._progress.update(self._task, completed=step, info=f"{status} best {best_val_loss:.4f}")
        self._progress.stop()


class _LogStream:
    """A text stream whose lines become log records (``driftloop.training.progress``)."""

    _log = logging.getLogger("driftloop.training.progress")

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if line:
                self._log.info(line)

    def flush(self) -> None:
        return None


def auto_progress(mode: str = "auto", stream: TextIO | None = None) -> ProgressReporter:
    """Rich bar on a TTY, JSON lines otherwise.

    ``mode`` (``observability.progress``) overrides: ``bar``, ``json`` (to the stream),
    ``log`` (JSON lines as log records, e.g. under another live display) or ``none``.
    """
    stream = stream or sys.stderr
    mode = "" if mode == "auto" else mode
    if mode == "none":
        return NullProgress()
    if mode == "log":
        return JsonLinesProgress(_LogStream())  # type: ignore[arg-type]
    if mode == "bar" or (not mode and getattr(stream, "isatty", lambda: False)()):
        return RichProgress()
    return JsonLinesProgress(stream)
