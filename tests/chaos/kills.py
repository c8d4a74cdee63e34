"""Seeded kill -9 of service processes: the schedule, the lives, and what they produced.

Each service runs as a sequence of *lives*: worker processes (``chaos/workers/*.py``)
forked from a fork server that imported the services once (``import torch``/``feast``
cost seconds; a fork costs milliseconds), so twenty kills per service fit the suite's
time budget. A life is SIGKILLed at a seeded random moment: a delay after it was started
(start-up, group join, first fetch), a delay after its first progress marker (mid-work:
batches, windows, checkpoints), or inside the window between its output flush and its
offset commit (:data:`COMMIT_WINDOW`: the worker marks that point and holds the commit
for :data:`COMMIT_HOLD_S`, see ``chaos.workers.common.hold_commits``, so the kill lands
there deterministically). A life that exits by itself before its kill is a crash unless
it exited 0. After the last kill, one more life runs to completion.

Whether a kill was *survived* is decided only from what the service produced (reports
covering offsets, versions registered, events learned, offsets committed), by a check
each test passes to :meth:`Lives.survived`; never from a later life's exit code.
:func:`kill_through` is the shared "paced chunk of input per life, then kill" driver.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KILLS_PER_SERVICE = 20
START_DELAY_S = (0.3, 2.0)  # after the fork
WORK_DELAY_S = (0.0, 1.5)  # after the first progress marker
START_SHARE = 0.25  # kills anchored at the start; the rest mid-work
MARKER_WAIT_S = 5.0  # a life that shows no progress for this long is killed anyway
START = "start"
ANY_MARKER = ""
COMMIT_WINDOW = "commit-window"
"""Anchor: the marker a worker writes after its output flush, before its offset commit."""
COMMIT_HOLD_S = 0.4  # how long such a life holds each commit (kills land inside it)
COMMIT_DELAY_S = (0.0, 0.2)  # kill delay after that marker: always inside the hold
CHUNK_WAIT_S = 120.0  # a chunk takes about a second to send; more only on a starved machine


@dataclass(frozen=True, slots=True)
class KillPoint:
    """When to kill one life: ``delay_s`` after its start (``anchor`` is :data:`START`) or
    after its first marker line starting with ``anchor`` (:data:`ANY_MARKER`: any line)."""

    anchor: str
    delay_s: float

    @property
    def at_start(self) -> bool:
        return self.anchor == START


Anchor = tuple[str, float, tuple[float, float]]
"""(anchor, weight, delay range in seconds)."""
DEFAULT_ANCHORS: tuple[Anchor, ...] = (
    (START, START_SHARE, START_DELAY_S), (ANY_MARKER, 0.45, WORK_DELAY_S),
    (COMMIT_WINDOW, 0.3, COMMIT_DELAY_S))


def kill_plan(seed: int, kills: int = KILLS_PER_SERVICE,
              anchors: tuple[Anchor, ...] = DEFAULT_ANCHORS) -> list[KillPoint]:
    """A seeded schedule; by default about a quarter at start-up, 45% mid-work, 30% between
    an output flush and its offset commit."""
    rng = random.Random(seed)
    names = [a for a, _, _ in anchors]
    weights = [w for _, w, _ in anchors]
    ranges = {a: r for a, _, r in anchors}
    plan = []
    for _ in range(kills):
        anchor = rng.choices(names, weights)[0]
        plan.append(KillPoint(anchor, rng.uniform(*ranges[anchor])))
    return plan


@dataclass(slots=True)
class Life:
    """One worker process and how it ended."""

    number: int
    point: KillPoint | None
    markers: Path
    log: Path
    started: float = 0.0
    ended: float = 0.0
    exitcode: int | None = None
    killed: bool = False
    marker_lines: int = 0
    killed_wall: float = 0.0
    """``time.time()`` of the SIGKILL (to compare with output timestamps)."""
    anchor_seen: bool = False
    """The kill's anchor marker appeared before the kill (an aimed kill hit its mark)."""
    given: tuple[str, ...] = ()
    """Ids of the input produced while this life ran (its share of the work)."""

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Lives:
    """The lives of one service in one test, and where their files go."""

    root: Path
    target: Callable[[dict[str, Any]], None]
    base_args: dict[str, Any]
    lives: list[Life] = field(default_factory=list)
    marker_wait_s: float = MARKER_WAIT_S
    commit_wait_s: float = 3 * MARKER_WAIT_S
    """How long a life aimed at :data:`COMMIT_WINDOW` may take to reach its first commit."""

    def _args(self, life: Life, **extra: Any) -> dict[str, Any]:
        return {**self.base_args, "markers": str(life.markers), "log": str(life.log),
                "life": life.number, **extra}

    def _new(self, point: KillPoint | None) -> Life:
        n = len(self.lives)
        life = Life(n, point, self.root / f"markers-{n:02d}.txt", self.root / f"life-{n:02d}.log")
        self.lives.append(life)
        return life

    def kill_once(self, point: KillPoint, **extra: Any) -> Life:
        """Start a life and SIGKILL it at ``point``."""
        life = self._new(point)
        if point.anchor == COMMIT_WINDOW:
            extra = {"commit_hold_s": COMMIT_HOLD_S, **extra}
        process = _context().Process(target=self.target, args=(self._args(life, **extra),),
                                     daemon=True)
        life.started = time.monotonic()
        process.start()
        anchor = life.started
        if not point.at_start:
            wait = self.commit_wait_s if point.anchor == COMMIT_WINDOW else self.marker_wait_s
            deadline = life.started + wait
            while (process.is_alive() and not _has_marker(life.markers, point.anchor)
                   and time.monotonic() < deadline):
                time.sleep(0.005)
            anchor = time.monotonic()
            life.anchor_seen = _has_marker(life.markers, point.anchor)
        end = anchor + point.delay_s
        while process.is_alive() and time.monotonic() < end:
            time.sleep(min(0.01, max(0.0, end - time.monotonic())))
        if process.is_alive():
            assert process.pid is not None
            life.killed_wall = time.time()
            os.kill(process.pid, signal.SIGKILL)
            life.killed = True
        process.join(30)
        life.ended = time.monotonic()
        life.exitcode = process.exitcode
        life.marker_lines = _lines(life.markers)
        if not life.killed and life.exitcode != 0:
            raise AssertionError(f"life {life.number} died by itself (exit {life.exitcode}):\n"
                                 + tail(life.log))
        return life

    def run_to_end(self, timeout_s: float, **extra: Any) -> Life:
        """The last life: runs until its worker finishes (exit 0) or ``timeout_s``."""
        life = self._new(None)
        process = _context().Process(target=self.target, args=(self._args(life, **extra),),
                                     daemon=True)
        life.started = time.monotonic()
        process.start()
        process.join(timeout_s)
        if process.is_alive():
            process.kill()
            process.join(10)
            raise AssertionError(f"the final life did not finish in {timeout_s} s:\n"
                                 + tail(life.log))
        life.ended = time.monotonic()
        life.exitcode = process.exitcode
        life.marker_lines = _lines(life.markers)
        if life.exitcode != 0:
            raise AssertionError(f"the final life failed (exit {life.exitcode}):\n"
                                 + tail(life.log))
        return life

    @property
    def killed(self) -> list[Life]:
        return [life for life in self.lives if life.killed]

    def survived(self, check: Callable[[Life], bool]) -> list[Life]:
        """The killed lives for which ``check`` (what the service produced) holds."""
        return [life for life in self.killed if check(life)]

    def aimed(self, anchor: str) -> tuple[int, int]:
        """(kills planned at ``anchor``, those that saw its marker before the kill)."""
        planned = [life for life in self.killed
                   if life.point is not None and life.point.anchor == anchor]
        return len(planned), sum(1 for life in planned if life.anchor_seen)

    def summary(self) -> str:
        killed = self.killed
        anchors: dict[str, list[int]] = {}
        for life in killed:
            if life.point is not None:
                name = life.point.anchor.strip() or "first marker"
                seen = anchors.setdefault(name, [0, 0])
                seen[0] += 1
                seen[1] += life.point.at_start or life.anchor_seen
        mean = sum(life.seconds for life in self.lives) / max(1, len(self.lives))
        where = ", ".join(f"{n} at {a} ({hit} hit)" for a, (n, hit) in sorted(anchors.items()))
        return (f"{len(killed)} kills ({where}), {len(self.lives)} lives, "
                f"{mean:.1f} s per life")


def kill_through(lives: Lives, plan: list[KillPoint], chunks: Sequence[Sequence[Any]],
                 start_chunk: Callable[[Sequence[Any]], tuple[threading.Thread,
                                                            threading.Event]],
                 ids: Callable[[Any], str], **extra: Any) -> None:
    """The shared loop: for each kill point, start producing the next chunk of input
    (paced, in a thread), run one life and kill it at its point, wait for the chunk to be
    sent. Each killed life remembers the ids of its chunk (:attr:`Life.given`). There is
    one chunk more than kills: it is produced after the last kill, so even that kill is
    followed by fresh work whose output the test can look for."""
    if len(chunks) != len(plan) + 1:
        raise ValueError(f"{len(chunks)} chunks for {len(plan)} kills (want one more)")
    for point, chunk in zip(plan, chunks, strict=False):
        thread, produced = start_chunk(chunk)
        life = lives.kill_once(point, **extra)
        thread.join(CHUNK_WAIT_S)
        if not produced.is_set():
            raise AssertionError(f"the input of life {life.number} was not all produced")
        life.given = tuple(ids(item) for item in chunk)
    thread, produced = start_chunk(chunks[-1])
    thread.join(CHUNK_WAIT_S)
    if not produced.is_set():
        raise AssertionError("the input of the final life was not all produced")


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _has_marker(path: Path, prefix: str) -> bool:
    try:
        with open(path) as f:
            return any(line.startswith(prefix) for line in f)
    except FileNotFoundError:
        return False


def tail(path: Path, chars: int = 4000) -> str:
    """The end of a life's log, for failure messages."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


_CONTEXT: Any = None


def _context() -> Any:
    assert _CONTEXT is not None, "use the `spawner` fixture (it starts the fork server)"
    return _CONTEXT


def start_fork_server(preload: list[str], pythonpath: list[str]) -> float:
    """Start the fork server with ``preload`` imported; returns the seconds it took.

    Its children import nothing more than their worker module needs beyond ``preload``.
    The server inherits ``PYTHONPATH`` (its import path) from this process.
    """
    global _CONTEXT
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(preload)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*pythonpath, *([old] if old else [])])
    started = time.monotonic()
    try:
        from multiprocessing import forkserver

        forkserver.ensure_running()
        probe = ctx.Process(target=_probe, args=(preload,))  # waits for the preload
        probe.start()
        probe.join(120)
        if probe.exitcode != 0:
            raise RuntimeError(f"fork server preload failed (probe exit {probe.exitcode})")
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    _CONTEXT = ctx
    return time.monotonic() - started


def _probe(preload: list[str]) -> None:
    import sys

    missing = [m for m in preload if m not in sys.modules]
    if missing:
        raise SystemExit(f"not preloaded: {missing}")
