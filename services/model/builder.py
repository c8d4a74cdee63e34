"""Build a model for an input schema, and rebuild a stored one from its ``model_meta``.

A builder takes the :class:`~services.model.preprocessing.InputSchema` (the model's
features and encoded input shapes) and architecture options and returns an
``nn.Module`` whose ``forward(numeric, categorical)`` gives one logit per row and whose
``meta`` property is a JSON-able dict from which :func:`restore_module` rebuilds it.
The built-in tabular MLP is the only builder today; the registry stores ``meta`` as a
version's ``architecture``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from services.model.preprocessing import InputSchema
from services.model.tabular import TabularArchitecture, TabularModel, build_tabular

ModelBuilder = Callable[[InputSchema, TabularArchitecture], nn.Module]
"""The seam: input schema and architecture options in, an untrained module out."""


def build_module(
    schema: InputSchema, arch: TabularArchitecture, builder: ModelBuilder = build_tabular
) -> nn.Module:
    """A fresh module for ``schema`` from ``builder`` (the tabular MLP by default)."""
    return builder(schema, arch)


def module_from_meta(meta: Mapping[str, Any]) -> TabularModel:
    """An untrained module shaped as ``meta`` describes (ValueError for an unknown format)."""
    return TabularModel.from_meta(dict(meta))


def restore_module(meta: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """The stored module: rebuilt from ``meta``, weights loaded, on CPU, in eval mode."""
    module = module_from_meta(meta)
    module.load_state_dict(dict(state_dict))
    module.eval()
    return module
