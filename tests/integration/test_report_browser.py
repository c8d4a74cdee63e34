"""The HTML report in a real headless Chromium (see :mod:`samples.browser` for the checks).

Pages: a binary model's report with hostile feature names, a regression model's with
24 features, a multiclass model's (all from ``tests/samples/report_data.py``). Reports of
real runs are checked where they are made: the demo's (tests/integration/
test_demo_loop.py) and the multiclass example's (test_example_multiclass.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from samples.browser import HOSTILE, DevTools, check_page
from samples.report_data import sample_data

from services.report.render import render_report

pytestmark = pytest.mark.integration


CASES = {
    "binary-hostile": dict(extra_features=HOSTILE),
    "regression-24-features": dict(task="regression",
                                   extra_features=tuple(f"f{i:02d}" for i in range(19))),
    "multiclass": dict(task="multiclass"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_report_renders_in_chromium(browser: DevTools, tmp_path: Path, case: str) -> None:
    data = sample_data(**CASES[case])
    page = tmp_path / "report.html"
    page.write_text(render_report(data), encoding="utf-8")
    check_page(browser, page, tmp_path / f"report-{case}.png", data=data)
