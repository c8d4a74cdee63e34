"""Snapshot content hash: canonical, stable, and sensitive to any change."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from services.features.feast_repo import ModelLayout
from services.features.generate import Generator, GeneratorConfig
from services.features.snapshot import canonical_frame, content_hash, snapshot_columns

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _frame(layout: ModelLayout) -> pd.DataFrame:
    return canonical_frame(Generator(GeneratorConfig(seed=21)).history(T0, 500), layout)


def test_hash_ignores_row_order_index_and_extra_columns(layout: ModelLayout) -> None:
    raw = Generator(GeneratorConfig(seed=21)).history(T0, 500)
    a = canonical_frame(raw, layout)
    shuffled = raw.sample(frac=1.0, random_state=0)
    shuffled = shuffled[list(reversed(shuffled.columns))]
    shuffled["event_timestamp"] = shuffled["event_timestamp"].dt.as_unit("ns")
    b = canonical_frame(shuffled, layout)
    assert list(a.columns) == snapshot_columns(layout)
    assert content_hash(a) == content_hash(b)


def test_hash_changes_with_any_value(layout: ModelLayout) -> None:
    base = _frame(layout)
    digest = content_hash(base)
    changes = {
        "amount": lambda f: f.__setitem__("amount", f["amount"].where(f.index != 3, 1.0)),
        "channel": lambda f: f.__setitem__("channel", f["channel"].where(f.index != 3, "x")),
        "label": lambda f: f.__setitem__("is_fraud", 1.0 - f["is_fraud"]),
        "null": lambda f: f.__setitem__("country", f["country"].where(f.index != 0, None)),
        "nan": lambda f: f.__setitem__("amount", f["amount"].where(f.index != 0, np.nan)),
    }
    seen = {digest}
    for name, change in changes.items():
        frame = base.copy()
        change(frame)
        new = content_hash(canonical_frame(frame, layout))
        assert new not in seen, name
        seen.add(new)
    assert content_hash(base.iloc[:-1]) != digest


def test_negative_zero_and_nan_payloads_hash_alike(layout: ModelLayout) -> None:
    a = _frame(layout)
    b = a.copy()
    a.loc[0, "velocity_score"] = 0.0
    b.loc[0, "velocity_score"] = -0.0
    assert content_hash(a) == content_hash(b)


def _reference_hash(frame: pd.DataFrame) -> str:
    """The hash as first written, value by value in Python: snapshot ids must not move."""
    import hashlib

    from pandas import DatetimeTZDtype

    digest = hashlib.sha256()
    digest.update(f"rows={len(frame)}\n".encode())
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, DatetimeTZDtype):
            digest.update(f"{name}:ts\n".encode())
            values = col.dt.tz_convert(UTC).dt.as_unit("us").astype("int64").to_numpy()
            digest.update(values.astype("<i8").tobytes())
        elif pd.api.types.is_float_dtype(col.dtype):
            digest.update(f"{name}:f8\n".encode())
            values = col.to_numpy(np.float64) + 0.0
            values[np.isnan(values)] = np.nan
            digest.update(values.astype("<f8").tobytes())
        else:
            digest.update(f"{name}:str\n".encode())
            parts = [b"\xff" if v is None else f"{len(v)}:{v}".encode() for v in col.tolist()]
            digest.update(b"\x00".join(parts))
    return digest.hexdigest()


def test_hash_is_the_reference_hash_with_nulls_and_non_ascii(layout: ModelLayout) -> None:
    frame = _frame(layout)
    frame["country"] = frame["country"].where(frame.index % 7 != 0, None)
    frame.loc[1, "channel"] = "carte bancaire – ünïcødé ✓"
    frame.loc[2, "merchant_category"] = ""
    assert content_hash(frame) == _reference_hash(frame)
    assert content_hash(frame.head(1)) == _reference_hash(frame.head(1))
    assert content_hash(frame.head(0)) == _reference_hash(frame.head(0))
