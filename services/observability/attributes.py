"""Attribute names used on driftloop spans and metrics, in one place.

Standard names come from the OpenTelemetry semantic conventions (messaging, error);
``driftloop.*`` names are ours. Metric attributes are kept low-cardinality: model,
feature, topic, group, reason, outcome; never an event id or an entity id.
"""

from __future__ import annotations

# messaging semantic conventions: defined with the spans that use them
from streams.tracing import (  # noqa: F401  (re-exported)
    MESSAGING_BATCH_MESSAGE_COUNT,
    MESSAGING_CONSUMER_GROUP_NAME,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_DESTINATION_PARTITION_ID,
    MESSAGING_KAFKA_MESSAGE_KEY,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
)

MESSAGING_KAFKA_OFFSET = "messaging.kafka.offset"
ERROR_TYPE = "error.type"

# driftloop
MODEL = "driftloop.model"
FEATURE = "driftloop.feature"
DRIFTED = "driftloop.drifted"
REPORT_ID = "driftloop.report_id"
REQUEST_ID = "driftloop.request_id"
RETRAIN_REASON = "driftloop.retrain.reason"
EPISODE_STATUS = "driftloop.episode.status"
MODEL_VERSION = "driftloop.model.version"
TRAINING_RUN_ID = "driftloop.training.run_id"
TRAINING_OUTCOME = "driftloop.training.outcome"
SHADOW_DECISION = "driftloop.shadow.decision"
DELTA_SIGN = "driftloop.shadow.delta_sign"
LOSS_NAME = "driftloop.loss.name"  # log_loss, cross_entropy, squared_error
PROMOTION_CAUSE = "driftloop.promotion.cause"
