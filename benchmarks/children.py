"""Run one timed measurement in a fresh (spawned) process, with a time limit.

Engines that may exhaust memory or hang (Feast's file store at 1M rows, a Spark
session) run apart from the benchmark, so a failure is a recorded outcome, not a
dead benchmark.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from typing import Any


def run_in_child(
    target: Callable[..., None], args: tuple[Any, ...], limit_s: float
) -> tuple[Any, dict[str, Any]]:
    """Run ``target(*args, queue)`` in a spawned process; ``(result, {})`` when it put its
    result on the queue, else ``(None, outcome)`` saying how it failed (out of time,
    or its exit code and how long it lived: e.g. killed for memory)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(*args, queue))
    started = time.perf_counter()
    child.start()
    child.join(limit_s)
    if child.is_alive():
        child.kill()
        child.join()
        return None, {"finished": False, "limit_s": limit_s}
    if child.exitcode != 0 or queue.empty():
        return None, {"finished": False, "exitcode": child.exitcode,
                      "died_after_s": round(time.perf_counter() - started, 1)}
    return queue.get(), {}
