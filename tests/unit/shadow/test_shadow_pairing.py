"""Pairing buffer: pairs, bounds, expiry, early labels, duplicates."""

from __future__ import annotations

import math

import pytest

from services.model.task import LabelError
from services.shadow.pairing import PairingBuffer


def test_binary_losses_are_clipped_log_losses() -> None:
    buf = PairingBuffer(eps=1e-3)
    buf.add_predictions("e1", 0.0, {2: 1.0}, now=0.0)  # certain of 0, certain of 1
    pair = buf.add_label("e1", 1.0, now=0.0)
    assert pair is not None
    assert pair.champion_loss == pytest.approx(-math.log(1e-3))  # clipped, not infinite
    assert pair.candidate_losses[2] == pytest.approx(-math.log(1 - 1e-3))


def test_label_after_predictions_yields_paired_losses() -> None:
    buf = PairingBuffer()
    assert buf.add_predictions("e1", 0.7, {2: 0.9, 3: 0.4}, now=0.0) is None
    pair = buf.add_label("e1", 1.0, now=1.0)
    assert pair is not None
    assert pair.champion_loss == pytest.approx(-math.log(0.7))
    assert pair.candidate_losses == {
        2: pytest.approx(-math.log(0.9)),
        3: pytest.approx(-math.log(0.4)),
    }
    assert len(buf) == 0 and buf.counters.paired == 1


def test_label_before_predictions_is_held_and_paired() -> None:
    buf = PairingBuffer(early_label_ttl=10.0)
    assert buf.add_label("e1", 0.0, now=0.0) is None
    assert buf.early_labels == 1
    pair = buf.add_predictions("e1", 0.2, {5: 0.1}, now=5.0)
    assert pair is not None and pair.label == 0.0
    assert pair.candidate_losses[5] == pytest.approx(-math.log(0.9))
    assert buf.early_labels == 0


def test_early_label_expires_after_its_limit() -> None:
    buf = PairingBuffer(early_label_ttl=10.0)
    buf.add_label("e1", 1.0, now=0.0)
    assert buf.add_predictions("e1", 0.5, {1: 0.5}, now=11.0) is None
    assert buf.counters.early_labels_expired == 1
    assert len(buf) == 1  # the prediction now waits for a label of its own


def test_predictions_expire_oldest_first_and_are_counted() -> None:
    buf = PairingBuffer(ttl=100.0)
    for i in range(5):
        buf.add_predictions(f"e{i}", 0.5, {1: 0.5}, now=float(i * 10))
    buf.expire(now=125.0)  # e0 (t=0), e1 (t=10), e2 (t=20) are older than 100 s
    assert buf.counters.expired == 3 and len(buf) == 2
    assert buf.add_label("e0", 1.0, now=125.0) is None  # gone: held as an early label
    assert buf.add_label("e4", 1.0, now=125.0) is not None


def test_capacity_evicts_oldest() -> None:
    buf = PairingBuffer(max_entries=3)
    for i in range(5):
        buf.add_predictions(f"e{i}", 0.5, {1: 0.5}, now=0.0)
    assert len(buf) == 3 and buf.counters.evicted == 2
    assert buf.add_label("e4", 1.0, now=0.0) is not None
    assert buf.add_label("e1", 1.0, now=0.0) is None


def test_early_labels_are_bounded() -> None:
    buf = PairingBuffer(max_early_labels=2)
    for i in range(4):
        buf.add_label(f"e{i}", 1.0, now=0.0)
    assert buf.early_labels == 2 and buf.counters.early_labels_evicted == 2


def test_duplicates_are_not_counted_twice() -> None:
    buf = PairingBuffer()
    buf.add_predictions("e1", 0.5, {1: 0.4}, now=0.0)
    assert buf.add_label("e1", 1.0, now=0.0) is not None
    assert buf.add_label("e1", 1.0, now=1.0) is None  # re-delivered label
    assert buf.add_predictions("e1", 0.5, {1: 0.4}, now=2.0) is None  # re-delivered event
    assert buf.counters.paired == 1 and buf.counters.duplicates == 2
    assert buf.early_labels == 0 and len(buf) == 0


def test_invalid_label_refused_counted_not_paired() -> None:
    buf = PairingBuffer()
    buf.add_predictions("e1", 0.5, {1: 0.4}, now=0.0)
    with pytest.raises(LabelError, match=r"^label: a binary label is 0 or 1, got 0\.3"):
        buf.add_label("e1", 0.3, now=0.0)
    assert buf.counters.invalid_labels == 1 and len(buf) == 1  # the prediction still waits
    assert buf.early_labels == 0 and buf.counters.paired == 0
    assert buf.add_label("e1", 1.0, now=0.0) is not None  # the valid label pairs it


def test_drop_candidate_forgets_its_predictions() -> None:
    buf = PairingBuffer()
    buf.add_predictions("e1", 0.5, {1: 0.4, 2: 0.6}, now=0.0)
    buf.drop_candidate(1)
    pair = buf.add_label("e1", 1.0, now=0.0)
    assert pair is not None and set(pair.candidate_losses) == {2}


def test_clear_predictions_after_a_champion_change() -> None:
    buf = PairingBuffer()
    buf.add_predictions("e1", 0.5, {1: 0.4}, now=0.0)
    buf.add_predictions("e2", 0.5, {1: 0.4}, now=0.0)
    assert buf.clear_predictions() == 2 and len(buf) == 0
    assert buf.counters.discarded == 2
    assert buf.add_label("e1", 1.0, now=1.0) is None  # held as an early label now


def test_promote_rebases_held_predictions_on_the_new_champion() -> None:
    buf = PairingBuffer()
    buf.add_predictions("e1", 0.5, {2: 0.9, 3: 0.2}, now=0.0)
    buf.add_predictions("e2", 0.5, {3: 0.2}, now=0.0)  # scored before 2 was in shadow
    assert buf.promote(2) == 1 and len(buf) == 1
    pair = buf.add_label("e1", 1.0, now=1.0)
    assert pair is not None
    assert pair.champion_loss == pytest.approx(-math.log(0.9))
    assert set(pair.candidate_losses) == {3}


def test_promote_keeps_the_old_champions_predictions_as_the_previous_version() -> None:
    buf = PairingBuffer()
    buf.add_predictions("e1", 0.5, {2: 0.9}, now=0.0)
    assert buf.promote(2, previous=1) == 0
    pair = buf.add_label("e1", 1.0, now=1.0)
    assert pair is not None  # held events stay comparable for the rollback watch
    assert pair.champion_loss == pytest.approx(-math.log(0.9))
    assert pair.candidate_losses == {1: pytest.approx(-math.log(0.5))}
