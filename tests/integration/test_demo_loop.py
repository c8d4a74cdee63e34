"""``make demo``'s program end to end: it exits 0 only when the loop took its main path
(a drift-monitor request, its candidate promoted in the same trace, quiet windows
against the new champion: :func:`services.demo.loop.main_path_problems`), and the
report it wrote passes the browser checks (samples/browser.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from samples.browser import DevTools, check_page

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_closes_the_loop_with_a_promotion(tmp_path: Path, browser: DevTools) -> None:
    env = dict(os.environ)
    env.pop("DRIFTLOOP_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "services.demo.run"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=420,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "demo OK" in output
    assert "champion v1 → v2" in output
    for stage in ("drift detected", "retrain request", "candidate registered",
                  "shadow verdict", "promotion", "quiet after promotion"):
        assert stage in output
    # the main path: the drift monitor asked, in the trace that ends with the promotion
    assert "covariate, base v1" in output
    assert "one trace from the drift decision to the promotion" in output
    demo = tmp_path / ".driftloop" / "demo"
    report = (demo / "report.html").read_text()
    assert "<svg" in report and "Lineage" in report
    # the report the demo wrote, in a real browser: its retrain and promotion on the axis
    check_page(browser, demo / "report.html", tmp_path / "report-demo.png",
               expect_markers=True)
    assert (demo / "otel.jsonl").stat().st_size > 0
