"""The feature side of driftloop: the Feast repo, synthetic data, ingest and snapshots.

- ``feast_repo``: open/apply the repo; ``load_model_spec`` from a FeatureService.
- ``generate``: seeded fraud events with controllable covariate and concept drift.
- ``history``: first load of generated history into the offline store.
- ``ingest`` (pure) / ``sink`` / ``ingest_service``: Kafka events into Feast.
- ``snapshot``: point-in-time-correct training snapshots and their drift profiles.
- ``replay`` / ``cli``: ``driftloop data generate`` and ``driftloop snapshot create``.

Nothing here imports Feast at module import time.
"""

from services.features.feast_checks import skip_feast_type_instrumentation

skip_feast_type_instrumentation()  # before anything imports Feast (see feast_checks)

