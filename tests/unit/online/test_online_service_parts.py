"""Pure parts of the online service: inline specs, per-model options, gauges, predictions."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.predict import parse_features
from services.featurespec import FeatureSpec, ModelSpec
from services.model_settings import InlineSpec
from services.observability.setup import in_memory_telemetry
from services.online.learner import OnlineLearner
from services.online.predict import predict
from services.online.service import spec_from_options
from services.online.state import OnlineState, SnapshotStore
from services.online.telemetry import OnlineMetrics
from streams.settings import load_settings

SPEC = ModelSpec("m", "id", (FeatureSpec("x", "numeric"), FeatureSpec("c", "categorical")))


def test_inline_spec_from_options() -> None:
    spec = spec_from_options("m", InlineSpec.model_validate({"entity": "id", "features": [
        {"name": "x"}, {"name": "c", "kind": "categorical", "critical": True}]}))
    assert spec == ModelSpec("m", "id", (FeatureSpec("x", "numeric"),
                                         FeatureSpec("c", "categorical", True)))
    with pytest.raises(ValueError):  # caught when the configuration loads
        load_settings(models={"m": {"online": {"spec": {"features": []}}}})


def test_learner_options_per_model() -> None:
    s = load_settings(models={"a": {"online": False}, "b": {"online": {"warmup": 5}},
                              "c": {"drift": {}}})
    assert not s.model("a").online.enabled
    assert s.model("b").online.enabled and s.model("b").online.warmup == 5
    assert s.model("c").online.learner_fields() == s.model("unknown").online.learner_fields()
    with pytest.raises(ValueError, match="warmpu"):  # a misspelt key fails at load time
        load_settings(models={"b": {"online": {"warmpu": 5}}})


def test_rolling_metrics_are_observable_gauges_per_model() -> None:
    telemetry = in_memory_telemetry("t")
    first, second = OnlineMetrics(telemetry.meter), OnlineMetrics(telemetry.meter)
    first.publish({"m": {"rolling_accuracy": 0.75, "rolling_log_loss": float("nan")}})
    second.publish({"n": {"rolling_accuracy": 0.5}})
    points = telemetry.metric_points("driftloop.online.rolling_accuracy")
    assert sorted((a["driftloop.model"], p.value) for a, p in points) == [("m", 0.75), ("n", 0.5)]
    assert telemetry.metric_points("driftloop.online.rolling_log_loss") == []  # NaN skipped
    second.close()
    points = telemetry.metric_points("driftloop.online.rolling_accuracy")
    assert [a["driftloop.model"] for a, _ in points] == ["m"]


def test_predict_answers_from_the_latest_snapshot_without_a_champion(tmp_path: Path) -> None:
    settings = load_settings(registry_uri=str(tmp_path / "registry"))
    learner = OnlineLearner(SPEC)
    for _ in range(50):
        learner.learn_one({"x": 1.0, "c": "a"}, 1.0)
        learner.learn_one({"x": -1.0, "c": "b"}, 0.0)
    store = SnapshotStore(tmp_path / "registry" / "online")
    store.save(OnlineState(learners={"m": learner}), {("features", 0): 100})
    out = predict(settings, "m", {"x": 1.0, "c": "a"})
    assert out["online"]["proba"] > 0.5 and out["online"]["learned"] == 100
    assert out["online"]["version"] == 1
    assert "proba" not in out["champion"] and "no alias" in out["champion"]["error"]
    assert "error" in predict(settings, "other", {"x": 1.0})["online"]


def test_parse_features() -> None:
    assert parse_features('{"x": 1, "c": "a", "z": null}') == {"x": 1, "c": "a", "z": None}
    with pytest.raises(ValueError):
        parse_features("[1, 2]")
    with pytest.raises(ValueError):
        parse_features('{"x": [1]}')


def test_predict_answers_with_the_verified_champion_too(tmp_path: Path) -> None:
    import torch

    from services.model.preprocessing import FORMAT_VERSION
    from services.model.tabular import TabularModel
    from services.registry.manifest import Lineage
    from services.registry.store import ModelRegistry

    settings = load_settings(registry_uri=str(tmp_path / "registry"))
    registry = ModelRegistry(settings.registry_uri)
    module = TabularModel(2, [], [], [], 0.0)
    with torch.no_grad():
        module.mlp[0].weight.copy_(torch.tensor([[2.0, 0.0]]))
        module.mlp[0].bias.zero_()
    reg = registry.register(
        "m", state_dict=module.state_dict(),
        preprocessing={"format": FORMAT_VERSION, "numeric": [
            {"name": "x", "mean": 0.0, "std": 1.0}], "categorical": []},
        model_meta=module.meta, lineage=Lineage(training_snapshot_id="s"),
        hyperparameters={}, metrics={}, seeds={})
    registry.set_alias("m", "champion", reg.version, expected=None)
    out = predict(settings, "m", {"x": 1.0, "c": "a"})
    assert out["champion"]["version"] == reg.version
    assert out["champion"]["proba"] == pytest.approx(float(torch.sigmoid(torch.tensor(2.0))))
    assert "error" in out["online"]  # no snapshot yet; the champion still answers
    weights = tmp_path / "registry" / "models" / "m" / "versions" / "1" / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))  # tampered: refused before anything is deserialised
    assert "sha256" in predict(settings, "m", {"x": 1.0})["champion"]["error"]
