"""Training: config, data, checkpoints and the resumable loop (the model and its
preprocessing are :mod:`services.model`'s).

Import the submodules directly (``services.training.loop`` ...); this package imports
nothing heavy so that the CLI stays quick.
"""
