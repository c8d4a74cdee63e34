"""The reliability ledger: sums per fault, round trip through the document, merge rules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos import conftest as chaos_conftest
from chaos.ledger import Ledger, aggregate, parse, render, update_document

NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)


def _ledger() -> Ledger:
    ledger = Ledger()
    ledger.recorder("t.py::a").fault("kill", injected=3, survived=3, lost=0, detail="one")
    ledger.recorder("t.py::b").fault("kill", injected=2, survived=1, lost=4, detail="two")
    ledger.recorder("t.py::b").fault("net | split", injected=1, survived=1, lost=0)
    return ledger


def test_records_of_one_fault_are_summed() -> None:
    rows = aggregate(_ledger().records, "now")
    assert (rows["kill"].injected, rows["kill"].survived, rows["kill"].lost) == (5, 4, 4)
    assert rows["kill"].tests == ["t.py::a", "t.py::b"]
    assert rows["kill"].detail == "one; two"
    assert "net / split" in rows  # table separators never reach the document


def test_document_round_trips() -> None:
    rows = aggregate(_ledger().records, "2026-11-24 07:00 UTC")
    text = render(rows)
    assert "| fault | injected | survived | data lost | test |" in text
    assert parse(text) == rows


def test_a_partial_run_updates_only_its_rows(tmp_path: Path) -> None:
    doc = tmp_path / "RELIABILITY.md"
    update_document(doc, _ledger().records, now=NOW)
    later = Ledger()
    later.recorder("t.py::c").fault("kill", injected=1, survived=1, lost=0, detail="again")
    rows = update_document(doc, later.records, now=NOW)
    assert rows is not None
    assert (rows["kill"].injected, rows["kill"].tests) == (1, ["t.py::c"])
    assert rows["net / split"].injected == 1  # kept from the first run
    assert parse(doc.read_text()) == rows


def test_no_records_leave_the_document_alone(tmp_path: Path) -> None:
    doc = tmp_path / "RELIABILITY.md"
    doc.write_text("hand written\n")
    assert update_document(doc, [], now=NOW) is None
    assert doc.read_text() == "hand written\n"


def test_inconsistent_records_are_refused() -> None:
    recorder = Ledger().recorder("t.py::a")
    with pytest.raises(ValueError):
        recorder.fault("kill", injected=1, survived=2, lost=0)
    with pytest.raises(ValueError):
        recorder.fault("kill", injected=1, survived=1, lost=-1)


def test_session_hook_writes_only_when_chaos_tests_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(chaos_conftest.DOC_ENV, raising=False)
    ledger = Ledger()
    config = SimpleNamespace(
        stash={chaos_conftest.LEDGER_KEY: ledger}, rootpath=tmp_path,
        pluginmanager=SimpleNamespace(get_plugin=lambda name: None),
    )
    session = SimpleNamespace(config=config)
    doc = tmp_path / "docs" / "RELIABILITY.md"
    chaos_conftest.pytest_sessionfinish(session, 0)  # type: ignore[arg-type]
    assert not doc.exists()
    ledger.recorder("t.py::a").fault("kill", injected=1, survived=1, lost=0)
    chaos_conftest.pytest_sessionfinish(session, 0)  # type: ignore[arg-type]
    assert parse(doc.read_text())["kill"].tests == ["t.py::a"]
