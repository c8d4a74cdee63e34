"""``POST /predict`` on the running online service, over the real broker.

The service (built by the ``driftloop run online`` factory, Agrawal spec inline) runs in
a thread with its health port on; the test produces labelled events and asks the
endpoint while the loop learns. No snapshot is ever written (huge cadence), so every
answer can only come from the live learner in memory.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from river.datasets import synth

from services.observability.setup import in_memory_telemetry
from services.online.service import OnlineService, build
from streams.broker import free_port
from streams.contracts import FeatureEvent, LabelEvent
from streams.producer import EventProducer
from streams.settings import HttpSettings, Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MODEL = "agrawal"
CATEGORICAL = ("elevel", "car", "zipcode")
NAMES = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")
SPEC = {"entity": "id", "features": [
    {"name": n, "kind": "categorical" if n in CATEGORICAL else "numeric"} for n in NAMES]}
T0 = datetime(2026, 4, 1, tzinfo=UTC)
N = 1500


def _rows(start: int, n: int) -> list[tuple[dict[str, Any], float]]:
    stream = itertools.islice(synth.Agrawal(seed=7), start, start + n)
    return [({k: (str(v) if k in CATEGORICAL else float(v)) for k, v in x.items()}, float(y))
            for x, y in stream]


def _publish(settings: Settings, start: int, n: int) -> None:
    with EventProducer(settings, "test") as producer:
        for i, (feats, label) in enumerate(_rows(start, n), start):
            at, key = T0 + timedelta(seconds=i), f"c{i % 50}"
            producer.send(settings.topic("features"), FeatureEvent(
                event_id=f"ev{i}", model=MODEL, entity_id=key, event_time=at,
                features=feats), key, span=False)
            producer.send(settings.topic("labels"), LabelEvent(
                event_id=f"ev{i}", model=MODEL, label=label, event_time=at), key, span=False)


def _post(url: str, payload: Any) -> tuple[int, dict[str, Any]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _wait(check: Any, what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _register_champion(settings: Settings, bias: float, expected: int | None) -> int:
    """A one-feature champion whose probability is sigmoid(bias) whatever the input."""
    import torch

    from services.model.preprocessing import FORMAT_VERSION
    from services.model.tabular import TabularModel
    from services.registry.manifest import Lineage
    from services.registry.store import ModelRegistry

    registry = ModelRegistry(settings.registry_uri)
    module = TabularModel(2, [], [], [], 0.0)  # value and missing flag of "age"
    with torch.no_grad():
        module.mlp[0].weight.zero_()
        module.mlp[0].bias.fill_(bias)
    reg = registry.register(
        MODEL, state_dict=module.state_dict(),
        preprocessing={"format": FORMAT_VERSION, "numeric": [
            {"name": "age", "mean": 40.0, "std": 10.0}], "categorical": []},
        model_meta=module.meta, lineage=Lineage(training_snapshot_id=f"s{bias}"),
        hyperparameters={}, metrics={}, seeds={})
    registry.set_alias(MODEL, "champion", reg.version, expected=expected)
    return reg.version


def test_predict_answers_from_the_live_learner(settings: Settings) -> None:
    port = free_port()
    settings = settings.with_models({MODEL: {"online": {"spec": SPEC}}}).model_copy(
        update={"http": HttpSettings(host="127.0.0.1", port=port)})
    service = build(settings, snapshot_every=10**9, snapshot_interval_s=3600.0,
                    batch_size=200, telemetry=in_memory_telemetry("test-online-http"))
    assert isinstance(service, OnlineService)
    learner = service.state.learners[MODEL]
    url = f"http://127.0.0.1:{port}/predict"
    features, _ = _rows(10_000, 1)[0]
    ask = {"model": MODEL, "features": features}
    failures: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    thread = threading.Thread(target=run, name="online-service", daemon=True)
    thread.start()
    try:
        _wait(lambda: service.health is not None or bool(failures), "the health server")
        assert failures == []
        # nothing learned yet: no meaningful prediction
        code, doc = _post(url, ask)
        assert code == 503 and "learned nothing" in doc["error"], doc

        _publish(settings, 0, N)
        _wait(lambda: learner.learned >= N, f"{N} learned events")
        code, doc = _post(url, ask)
        assert code == 200, doc
        assert doc["model"] == MODEL and set(doc) == {"model", "online"}
        proba = doc["online"]["proba"]
        assert isinstance(proba, float) and math.isfinite(proba) and 0.0 < proba < 1.0
        assert doc["online"]["learned"] >= N
        assert "error" not in doc["online"]
        # the live learner, not a snapshot: none was written
        assert service.store.list() == []
        assert proba == pytest.approx(learner.predict_proba(features))

        # while the loop learns more, concurrent askers always get answers that only grow
        seen: list[list[int]] = [[] for _ in range(4)]

        def asker(out: list[int]) -> None:
            for _ in range(25):
                c, d = _post(url, ask)
                assert c == 200 and math.isfinite(d["online"]["proba"]), d
                out.append(d["online"]["learned"])

        askers = [threading.Thread(target=asker, args=(s,)) for s in seen]
        for t in askers:
            t.start()
        _publish(settings, N, N)
        for t in askers:
            t.join(60)
        assert all(len(s) == 25 and s == sorted(s) for s in seen), seen
        _wait(lambda: learner.learned >= 2 * N, f"{2 * N} learned events")
        assert _post(url, ask)[1]["online"]["learned"] == 2 * N

        # the champion on demand: absent first, then loaded once per alias version
        code, doc = _post(url, {**ask, "champion": True})
        assert code == 200 and "proba" in doc["online"]
        assert "proba" not in doc["champion"] and "no alias" in doc["champion"]["error"]
        v1 = _register_champion(settings, 0.0, expected=None)
        for _ in range(3):
            code, doc = _post(url, {**ask, "champion": True})
            assert code == 200 and doc["champion"]["version"] == v1, doc
            assert doc["champion"]["proba"] == pytest.approx(0.5)
        assert service.champions.loads == 1
        v2 = _register_champion(settings, 2.0, expected=v1)  # a promotion
        code, doc = _post(url, {**ask, "champion": True})
        assert doc["champion"]["version"] == v2
        assert doc["champion"]["proba"] == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-5)
        assert service.champions.loads == 2

        # malformed requests are 400 with a message
        code, doc = _post(url, {"model": "nope", "features": features})
        assert code == 400 and MODEL in doc["error"] and doc["known"] == [MODEL]
        for bad, message in [
            (b"{not json", "not JSON"),
            (b"[1, 2]", "JSON object"),
            ({"features": features}, "'model'"),
            ({"model": 3, "features": features}, "'model'"),
            ({"model": MODEL, "features": [1, 2]}, "'features'"),
            ({"model": MODEL, "features": {"age": [1]}}, "age"),
            ({**ask, "champion": "yes"}, "'champion'"),
        ]:
            code, doc = _post(url, bad)
            assert code == 400 and message in doc["error"], (bad, doc)

        # /healthz is still there, with the learner's metrics
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert json.loads(resp.read())["detail"][MODEL]["learned"] == 2 * N
    finally:
        service.stop()
        thread.join(60)
    assert not thread.is_alive()
    assert failures == []
