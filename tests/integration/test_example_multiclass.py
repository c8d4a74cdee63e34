"""The multiclass example (``examples/multiclass``) closes the loop end to end, as a user runs it
(see :mod:`samples.examples_loop`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from samples.examples_loop import EXAMPLES, close_the_loop

from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_multiclass_example_closes_the_loop(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    close_the_loop(EXAMPLES["multiclass"], settings, tmp_path, monkeypatch)
