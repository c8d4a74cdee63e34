"""``shadow_verdict/1`` carries the request it answers, and old verdicts still decode."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from streams.codec import decode, encode
from streams.contracts import PairedTest, ShadowVerdict

VERDICT = ShadowVerdict(
    event_id="v-1", model="m", candidate=2, champion=1, samples=10, metric="log_loss",
    candidate_metric=0.4, champion_metric=0.5,
    test=PairedTest(method="t", statistic=2.0, p_value=0.01, mean_difference=0.1,
                    relative_improvement=0.2),
    decision="promote", reason="better", decided_at=datetime(2026, 1, 1, tzinfo=UTC),
    request_id="req-7",
)


def test_request_id_round_trips() -> None:
    assert decode(encode(VERDICT), ShadowVerdict).request_id == "req-7"


def test_a_verdict_written_without_request_id_decodes_with_none() -> None:
    old = json.loads(encode(VERDICT))
    del old["request_id"]
    assert old["schema"] == "shadow_verdict/1"
    back = decode(json.dumps(old).encode(), ShadowVerdict)
    assert back.request_id is None and back.candidate == 2
