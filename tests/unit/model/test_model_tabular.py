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


def test_head_has_one_output_per_class_and_its_meta_rebuilds_it() -> None:
    spec = synthetic_spec(n_numeric=3, n_categorical=1)
    pre = Preprocessor.fit(spec, synthetic_frame(100, spec))
    enc = pre.transform(synthetic_frame(5, spec, seed=4))
    inputs = torch.from_numpy(enc.numeric), torch.from_numpy(enc.categorical)
    multi = build_tabular(pre.schema, ArchitectureConfig(hidden_sizes=(8,)), n_outputs=4)
    assert multi(*inputs).shape == (5, 4) and multi.meta["n_outputs"] == 4
    assert TabularModel.from_meta(multi.meta)(*inputs).shape == (5, 4)

    single = build_tabular(pre.schema, ArchitectureConfig(hidden_sizes=(8,)))
    rebuilt = TabularModel.from_meta(single.meta)
    rebuilt.load_state_dict(single.state_dict())
    assert rebuilt.n_outputs == 1 and rebuilt(*inputs).shape == (5,)
