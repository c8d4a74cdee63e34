from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from services.featurespec import FeatureSpec, ModelSpec
from services.model.preprocessing import PreprocessingError, Preprocessor

SPEC = ModelSpec(
    model="m",
    entity="e",
    features=(
        FeatureSpec("a", "numeric"),
        FeatureSpec("b", "numeric"),
        FeatureSpec("c", "categorical"),
    ),
)


def _frame(a, b, c) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return pd.DataFrame({"a": a, "b": b, "c": c})


def test_fitted_on_training_part_only() -> None:
    train = _frame([1.0, 2.0, 3.0, np.nan], [5.0, 5.0, 5.0, 5.0], ["x", "y", None, "x"])
    pre = Preprocessor.fit(SPEC, train)
    assert pre.numeric[0].mean == pytest.approx(2.0)
    assert pre.numeric[0].std == pytest.approx(np.std([1, 2, 3]))
    assert pre.numeric[1].std == 1.0  # constant feature: no division by zero
    assert pre.categorical[0].categories == ("x", "y")
    enc = pre.transform(_frame([2.0, np.nan, np.inf], [5.0, 6.0, None], ["y", "z", None]))
    # values then missing indicators; missing -> 0 after scaling (= mean imputation)
    assert enc.numeric.shape == (3, 4) and enc.numeric.dtype == np.float32
    assert enc.numeric[0, 0] == 0.0 and enc.numeric[0, 2] == 0.0
    assert enc.numeric[1, 0] == 0.0 and enc.numeric[1, 2] == 1.0
    assert enc.numeric[2, 0] == 0.0 and enc.numeric[2, 2] == 1.0  # inf counts as missing
    assert enc.numeric[1, 1] == pytest.approx(1.0) and enc.numeric[2, 3] == 1.0
    # unseen and null categories land in the unknown bucket 0
    assert enc.categorical[:, 0].tolist() == [2, 0, 0]


def test_json_round_trip_without_pickle() -> None:
    pre = Preprocessor.fit(SPEC, _frame([1.0, 4.0], [0.0, 1.0], [3, "3"]))
    text = json.dumps(pre.to_dict())
    back = Preprocessor.from_dict(json.loads(text))
    assert back == pre
    assert back.categorical[0].categories == ("3",)  # compared as strings
    with pytest.raises(PreprocessingError):
        Preprocessor.from_dict({**pre.to_dict(), "format": 99})


def test_extend_vocabularies_keeps_indices() -> None:
    pre = Preprocessor.fit(SPEC, _frame([1.0], [1.0], ["b"]))
    grown = pre.extend_vocabularies(_frame([1.0, 2.0], [1.0, 1.0], ["a", "b"]))
    assert grown.categorical[0].categories == ("b", "a")
    assert grown.numeric == pre.numeric
    assert grown.transform(_frame([1.0], [1.0], ["b"])).categorical[0, 0] == 1


def test_spec_mismatch_and_missing_columns() -> None:
    pre = Preprocessor.fit(SPEC, _frame([1.0], [1.0], ["b"]))
    other = ModelSpec(model="m", entity="e", features=(FeatureSpec("a", "numeric"),))
    with pytest.raises(PreprocessingError):
        pre.check_spec(other)
    with pytest.raises(PreprocessingError):
        Preprocessor.fit(SPEC, pd.DataFrame({"a": [1.0]}))
