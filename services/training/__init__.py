"""Training: config, preprocessing, the tabular model, checkpoints and the resumable loop.

Import the submodules directly (``services.training.loop`` ...); this package imports
nothing heavy so that the CLI stays quick.
"""
