"""Shadow evaluation: a candidate scores the champion's traffic until it proves itself.

Pure parts: :mod:`.pairing` (predictions held until their labels arrive, through the
shared :mod:`services.labeljoin`, and per-event paired losses of the model's task),
:mod:`.decision` (``ShadowPolicy``, running paired statistics, group-sequential
one-sided paired test: promote / reject / continue) and :mod:`.rollback` (watch a new
champion's live loss against its shadow estimate).
:mod:`.promotion` is the one path by which ``champion`` moves (shadow promotion,
automatic rollback, ``driftloop models rollback``): an intent in the registry's outbox,
the compare-and-set, then the events, so a crash in between is completed at the next
start. :mod:`.service` is the Kafka loop (``driftloop run shadow``).

A candidate whose parent is no longer the champion (another candidate was promoted while
it was in shadow) is **rejected, not re-based** (``decision.check_baseline``):

* Its evidence so far is pairs against the old champion; re-basing would either throw
  that away (a fresh run against the new champion, i.e. a new evaluation anyway) or mix
  two baselines in one test, which the sequential guarantee does not cover.
* It was fine-tuned from the old champion on data the new champion has already absorbed;
  whether it still adds anything is a question for a new candidate built from the new
  champion, which is what the drift monitor asks for if the drift persists.
* Rejection is safe (the champion stays) and cheap; the verdict says why, so the
  retrain request's in-flight guard is cleared and a new request can follow.
"""
