"""The reliability ledger: sums per fault, round trip through the document, merge rules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos import ledger as ledger_module
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


def test_session_writes_only_when_chaos_tests_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ledger_module.DOC_ENV, raising=False)
    ledger = Ledger()
    config = SimpleNamespace(stash={ledger_module.LEDGER_KEY: ledger}, rootpath=tmp_path)
    doc = tmp_path / "docs" / "RELIABILITY.md"
    assert ledger_module.session_finished(config) is None  # type: ignore[arg-type]
    assert not doc.exists()
    ledger.recorder("t.py::a").fault("kill", injected=1, survived=1, lost=0)
    assert ledger_module.session_finished(config) == doc  # type: ignore[arg-type]
    assert parse(doc.read_text())["kill"].tests == ["t.py::a"]


def test_xdist_workers_pass_records_to_the_controller_which_alone_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ledger_module.DOC_ENV, raising=False)
    controller = SimpleNamespace(stash={ledger_module.LEDGER_KEY: Ledger()}, rootpath=tmp_path)
    doc = tmp_path / "docs" / "RELIABILITY.md"
    for n, fault in enumerate(("kill ingest", "kill drift")):
        worker_ledger = Ledger()
        worker_ledger.recorder(f"t.py::{n}").fault(fault, injected=20, survived=20, lost=0)
        worker = SimpleNamespace(stash={ledger_module.LEDGER_KEY: worker_ledger},
                                 rootpath=tmp_path, workeroutput={})
        assert ledger_module.session_finished(worker) is None  # type: ignore[arg-type]
        assert not doc.exists()
        ledger_module.worker_finished(controller, worker.workeroutput)  # type: ignore[arg-type]
    assert ledger_module.session_finished(controller) == doc  # type: ignore[arg-type]
    assert set(parse(doc.read_text())) == {"kill ingest", "kill drift"}


def test_retired_faults_are_dropped_from_the_document(tmp_path: Path) -> None:
    doc = tmp_path / "RELIABILITY.md"
    old = Ledger()
    retired = sorted(ledger_module.RETIRED_FAULTS)[0]
    old.recorder("t.py::a").fault(retired, injected=1, survived=1, lost=0)
    old.recorder("t.py::a").fault("kept", injected=1, survived=1, lost=0)
    update_document(doc, old.records, now=NOW)
    assert retired in parse(doc.read_text())  # written while a test still recorded it
    later = Ledger()
    later.recorder("t.py::b").fault("new", injected=1, survived=1, lost=0)
    rows = update_document(doc, later.records, now=NOW)
    assert rows is not None and set(rows) == {"kept", "new"}
    assert retired not in doc.read_text()
