"""The regression example (``examples/regression``) closes the loop end to end, as a user runs it
(see :mod:`samples.examples_loop`), and its report passes the browser checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from samples.browser import DevTools, check_page
from samples.examples_loop import EXAMPLES, close_the_loop, write_report

from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.soak]  # -m soak


def test_the_regression_example_closes_the_loop(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, browser: DevTools,
) -> None:
    example = EXAMPLES["regression"]
    config = close_the_loop(example, settings, tmp_path, monkeypatch)
    # its report, in a real browser: the drifted windows, the retrain and the promotion
    page = write_report(config, example, tmp_path / "report.html")
    check_page(browser, page, tmp_path / "report-regression.png", expect_markers=True)
