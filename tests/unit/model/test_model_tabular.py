from __future__ import annotations

import torch

from services.model.preprocessing import Preprocessor
from services.model.tabular import TabularModel, build_tabular, grow_embeddings
from services.training.config import ArchitectureConfig
from services.training.synthetic import synthetic_frame, synthetic_spec


def test_build_forward_and_rebuild_from_meta() -> None:
    spec = synthetic_spec(n_numeric=3, n_categorical=2)
    pre = Preprocessor.fit(spec, synthetic_frame(200, spec))
    model = build_tabular(pre.schema, ArchitectureConfig(hidden_sizes=(8,)))
    enc = pre.transform(synthetic_frame(5, spec, seed=9))
    logits = model(torch.from_numpy(enc.numeric), torch.from_numpy(enc.categorical))
    assert logits.shape == (5,)
    clone = TabularModel.from_meta(model.meta)
    clone.load_state_dict(model.state_dict())
    assert [e.num_embeddings for e in clone.embeddings] == list(pre.cardinalities)


def test_grown_rows_start_as_the_unknown_bucket() -> None:
    model = TabularModel(2, [4, 3], [2, 2], [8], 0.0)
    state, meta = grow_embeddings(model.state_dict(), model.meta, (6, 3))
    grown = TabularModel.from_meta(meta)
    grown.load_state_dict(state)
    weight = grown.embeddings[0].weight
    assert weight.shape == (6, 2)
    assert torch.equal(weight[4], weight[0]) and torch.equal(weight[5], weight[0])
    assert torch.equal(weight[:4], model.embeddings[0].weight)
