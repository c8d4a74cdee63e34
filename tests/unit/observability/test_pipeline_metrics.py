"""Every PipelineMetrics instrument records and is collected with its attributes and unit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from services.observability.metrics import PipelineMetrics
from services.observability.setup import in_memory_telemetry
from streams.contracts import DriftReport, FeatureDrift, WindowBounds

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _report(drifted: bool) -> DriftReport:
    return DriftReport(
        event_id="r1",
        model="churn",
        window=WindowBounds(start_time=NOW, end_time=NOW, n_events=10),
        reference_snapshot_id="snap",
        features=[
            FeatureDrift(name="age", kind="numeric", psi=0.31, ks_statistic=0.2,
                         ks_pvalue=1e-5, missing_share=0.0, drifted=True),
            FeatureDrift(name="plan", kind="categorical", psi=0.02, missing_share=0.1,
                         drifted=False),
        ],
        drifted_share=0.5,
        drifted=drifted,
        created_at=NOW,
    )


def _exercise(m: PipelineMetrics) -> None:
    m.record_drift_report(_report(True))
    m.record_drift_report(_report(False))
    m.record_consumed("features", "drift", 100)
    m.record_dead_letter("features", "decode")
    m.record_process_duration("features", "drift", 0.02)
    m.record_freshness("churn", 1.5)
    m.record_retrain_request("churn", "covariate")
    m.record_candidate_registered("churn", "covariate", 120.0)
    m.record_training_started("churn", start_delay_seconds=3.0)
    m.record_training_finished("churn", "completed", 90.0, final_loss=0.12)
    m.record_training_started("churn")
    m.record_training_finished("churn", "failed", 5.0, error_type="OOM")
    m.record_shadow_pairs("churn", 40)
    m.record_verdict("churn", "promote", -0.03, loss_name="log_loss")
    m.record_promotion("churn", "shadow", retrain_reason="covariate")
    m.record_promotion("churn", "rollback")


EXPECTED = {
    # name: (unit, attribute keys of every point)
    "driftloop.drift.psi": ("1", {"driftloop.model", "driftloop.feature"}),
    "driftloop.drift.ks_statistic": ("1", {"driftloop.model", "driftloop.feature"}),
    "driftloop.drift.latest_psi": ("", {"driftloop.model", "driftloop.feature"}),
    "driftloop.drift.latest_ks_statistic": ("", {"driftloop.model", "driftloop.feature"}),
    "driftloop.drift.windows": ("{window}", {"driftloop.model", "driftloop.drifted"}),
    "driftloop.drift.drifted_share": ("1", {"driftloop.model"}),
    "driftloop.stream.consumed": (
        "{message}", {"messaging.destination.name", "messaging.consumer.group.name"}),
    "driftloop.stream.dead_letters": (
        "{message}", {"messaging.destination.name", "error.type"}),
    "driftloop.stream.process.duration": (
        "s", {"messaging.destination.name", "messaging.consumer.group.name"}),
    "driftloop.ingest.freshness_lag": ("s", {"driftloop.model"}),
    "driftloop.retrain.requests": ("{request}", {"driftloop.model", "driftloop.retrain.reason"}),
    "driftloop.retrain.registration_latency": (
        "s", {"driftloop.model", "driftloop.retrain.reason"}),
    "driftloop.retrain.promotions": (
        "{promotion}", {"driftloop.model", "driftloop.retrain.reason"}),
    "driftloop.training.runs.started": ("{run}", {"driftloop.model"}),
    "driftloop.training.runs.finished": ("{run}", None),
    "driftloop.training.duration": ("s", {"driftloop.model", "driftloop.training.outcome"}),
    "driftloop.training.start_delay": ("s", {"driftloop.model"}),
    "driftloop.training.final_loss": ("1", {"driftloop.model"}),
    "driftloop.training.checkpoints": ("{checkpoint}", {"driftloop.model"}),
    "driftloop.training.checkpoint_age": ("s", {"driftloop.model", "driftloop.training.run_id"}),
    "driftloop.shadow.pairs": ("{pair}", {"driftloop.model"}),
    "driftloop.shadow.verdicts": ("{verdict}", {"driftloop.model", "driftloop.shadow.decision"}),
    "driftloop.shadow.metric_delta": (
        "1", {"driftloop.model", "driftloop.shadow.decision", "driftloop.shadow.delta_sign",
              "driftloop.loss.name"}),
    "driftloop.shadow.latest_metric_delta": (
        "", {"driftloop.model", "driftloop.shadow.decision", "driftloop.loss.name"}),
    "driftloop.model.promotions": ("{promotion}", {"driftloop.model", "driftloop.promotion.cause"}),
}


def test_every_instrument_is_collected_with_unit_and_attributes() -> None:
    tel = in_memory_telemetry("all")
    clock = [1000.0]
    m = PipelineMetrics(tel.meter, clock=lambda: clock[0])
    _exercise(m)
    with m.track_checkpoints("churn", "run-1") as watch:
        watch.checkpoint_written()
        clock[0] += 42.0
        data = tel.metric_reader.get_metrics_data()
    collected = {
        metric.name: metric
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    assert set(collected) == set(EXPECTED)
    for name, (unit, keys) in EXPECTED.items():
        metric = collected[name]
        assert metric.unit == unit, name
        assert metric.data.data_points, name
        if keys is not None:
            for point in metric.data.data_points:
                assert set(point.attributes) == keys, (name, dict(point.attributes))


def test_every_instrument_is_documented() -> None:
    sre = (Path(__file__).resolve().parents[3] / "docs" / "SRE.md").read_text()
    for name in EXPECTED:
        assert f"| `{name}` |" in sre, name


def test_recorded_values() -> None:
    tel = in_memory_telemetry("all")
    m = tel.metrics
    assert tel.metrics is m  # built once per telemetry
    _exercise(m)

    def by(name: str) -> dict[frozenset, object]:
        return {frozenset(a.items()): p for a, p in tel.metric_points(name)}

    windows = {a["driftloop.drifted"]: p.value
               for a, p in tel.metric_points("driftloop.drift.windows")}
    assert windows == {True: 1, False: 1}
    age_psi = by("driftloop.drift.psi")[
        frozenset({("driftloop.model", "churn"), ("driftloop.feature", "age")})]
    assert age_psi.count == 2 and abs(age_psi.sum - 0.62) < 1e-9
    # categorical features have no KS statistic
    assert [a["driftloop.feature"] for a, _ in tel.metric_points("driftloop.drift.ks_statistic")] \
        == ["age"]
    latest = by("driftloop.drift.latest_psi")
    assert latest[frozenset({("driftloop.model", "churn"), ("driftloop.feature", "plan")})].value \
        == 0.02
    finished = {(a["driftloop.training.outcome"], a.get("error.type")): p.value
                for a, p in tel.metric_points("driftloop.training.runs.finished")}
    assert finished == {("completed", None): 1, ("failed", "OOM"): 1}
    assert sum(p.value for _, p in tel.metric_points("driftloop.training.runs.started")) == 2
    causes = {a["driftloop.promotion.cause"]: p.value
              for a, p in tel.metric_points("driftloop.model.promotions")}
    assert causes == {"shadow": 1, "rollback": 1}
    # only the shadow promotion of a requested candidate counts towards usefulness
    assert [p.value for _, p in tel.metric_points("driftloop.retrain.promotions")] == [1]
    assert [p.value for _, p in tel.metric_points("driftloop.stream.consumed")] == [100]
    ((attrs, delta),) = tel.metric_points("driftloop.shadow.metric_delta")
    assert delta.count == 1 and delta.sum == 0.03
    assert attrs["driftloop.shadow.delta_sign"] == "negative"
    assert attrs["driftloop.loss.name"] == "log_loss"
    ((_, latest_delta),) = tel.metric_points("driftloop.shadow.latest_metric_delta")
    assert latest_delta.value == -0.03


def test_checkpoint_age_tracks_running_trainings_only() -> None:
    tel = in_memory_telemetry("train")
    clock = [0.0]
    m = PipelineMetrics(tel.meter, clock=lambda: clock[0])
    a = m.track_checkpoints("churn", "run-a")
    b = m.track_checkpoints("fraud", "run-b")
    clock[0] = 30.0
    a.checkpoint_written()
    clock[0] = 50.0
    ages = {attrs["driftloop.training.run_id"]: p.value
            for attrs, p in tel.metric_points("driftloop.training.checkpoint_age")}
    assert ages == {"run-a": 20.0, "run-b": 50.0}
    a.close()
    b.close()
    assert tel.metric_points("driftloop.training.checkpoint_age") == []
    checkpoints = tel.metric_points("driftloop.training.checkpoints")
    assert [(attrs, p.value) for attrs, p in checkpoints] == [({"driftloop.model": "churn"}, 1)]
