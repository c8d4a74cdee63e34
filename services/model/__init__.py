"""The model a registry version holds: its preprocessing, how it is built and how it scores.

- :mod:`services.model.preprocessing`: the feature preprocessing fitted on training data
  and stored as JSON (:class:`~services.model.preprocessing.Preprocessor`), and the
  :class:`~services.model.preprocessing.InputSchema` a model is built for;
- :mod:`services.model.builder`: the builder seam (input schema + architecture options ->
  ``nn.Module``) and rebuilding a stored module from its ``model_meta``;
- :mod:`services.model.tabular`: the built-in tabular MLP and its builder;
- :mod:`services.model.scoring`: scoring a verified registry version (one function).

Training, the registry's loaders, the shadow evaluator and ``predict`` use these; the
registry itself only stores and verifies files. Submodules import torch, so this package
imports none of them eagerly.
"""
