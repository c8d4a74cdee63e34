"""The ledger's poison table: rendered after the fault rows, parsed back, replaced whole."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from chaos.ledger import Ledger, parse, parse_poison, update_document

NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)


def _ledger() -> Ledger:
    ledger = Ledger()
    ledger.recorder("t.py::kills").fault("kill", injected=3, survived=3, lost=0)
    poison = ledger.recorder("t.py::poison")
    poison.poison("event_time 2300 | x", service="ingest", expected="invalid_value",
                  observed="invalid_value", alive=True)
    poison.poison("deep nesting", service="online", expected="too_deep", observed="none",
                  alive=False)
    return ledger


def test_the_poison_table_round_trips_and_leaves_the_fault_rows_alone(tmp_path: Path) -> None:
    doc = tmp_path / "RELIABILITY.md"
    ledger = _ledger()
    rows = update_document(doc, ledger.records, now=NOW, poison=ledger.poison)
    text = doc.read_text()
    assert "## Poison inputs" in text
    assert "| `event_time 2300 / x` | ingest | `invalid_value` | `invalid_value` | yes |" in text
    assert parse(text) == rows  # poison rows are not read as fault rows
    assert [(p.input, p.service, p.observed, p.alive) for p in parse_poison(text)] == [
        ("event_time 2300 / x", "ingest", "invalid_value", True),
        ("deep nesting", "online", "none", False),
    ]


def test_a_run_without_poison_keeps_the_table_and_one_with_poison_replaces_it(
    tmp_path: Path,
) -> None:
    doc = tmp_path / "RELIABILITY.md"
    first = _ledger()
    update_document(doc, first.records, now=NOW, poison=first.poison)
    kills_only = Ledger()
    kills_only.recorder("t.py::kills").fault("kill", injected=5, survived=5, lost=0)
    update_document(doc, kills_only.records, now=NOW)
    text = doc.read_text()
    assert parse(text)["kill"].injected == 5
    assert len(parse_poison(text)) == 2
    again = Ledger()
    again.recorder("t.py::poison").poison("empty", service="drift", expected="empty",
                                           observed="empty", alive=True)
    update_document(doc, [], now=NOW, poison=again.poison)
    text = doc.read_text()
    assert [p.input for p in parse_poison(text)] == ["empty"]
    assert parse(text)["kill"].injected == 5
