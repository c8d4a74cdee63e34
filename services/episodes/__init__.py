"""Episodes: one retrain per change of a model's data, shared by every service.

:mod:`services.episodes.book` is the pure fold of the control topics into episodes;
:mod:`services.episodes.reader` reads those topics in full for it.
"""
