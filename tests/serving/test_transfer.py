"""Which assets a served agent allocates (serving.universe): a flat agent its training assets only (422 naming both
lists), an asset-shared one any others unless a feature ties it to its training universe (422 naming the feature);
mixed universes in one batch; the A/B scorer skipping requests over other assets; duplicate names refused. No Ray:
the deployments' own agent objects and the ingress's FastAPI pieces."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from envs.config import EnvConfig
from envs.features import latest_observation
from envs.portfolio_env import PortfolioEnv
from serving.agents import BaselineAgent, PolicyAgent
from serving.http import UniqueKeysRoute, validation_error
from serving.schemas import MAX_ASSETS, AllocateRequest
from serving.scoring import Scorer
from serving.universe import can_allocate, names, parse_allocation
from tests.support.agents import export_untrained
from tests.support.markets import ASSETS
from tests.support.serving import body
from tests.support.shared_agents import export_shared

OTHERS = tuple(f"X{i:03d}" for i in range(7))


@pytest.fixture(scope="module")
def agents(tiny, small_config, tmp_path_factory):
    """Served agents on the tiny market: ``shared`` (asset-shared, closes only), ``regimes`` (asset-shared,
    observes regimes of the model fitted on STOCK, BOND, GOLD, CRYPTO), ``flat`` (an mlp PPO)."""
    root = tmp_path_factory.mktemp("transfer")
    regimes = EnvConfig.model_validate(
        small_config.model_dump() | {"observe_regimes": True, "regimes": {"law": "true"}}
    )
    paths = {
        "shared": export_shared(PortfolioEnv(small_config, market=tiny.market), root, root / "models"),
        "regimes": export_shared(PortfolioEnv(regimes, market=tiny.market), root, root / "models", agent="regimes"),
        "flat": export_untrained(PortfolioEnv(small_config, market=tiny.market), "ppo", root, root / "models", "flat"),
    }
    return {name: PolicyAgent(path) for name, path in paths.items()}


def other_body(n_assets: int = 7, n_closes: int = 30, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    closes = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(n_closes, n_assets)), axis=0))
    return {"prices": {f"X{k:03d}": closes[:, k].tolist() for k in range(n_assets)}}


def detail(refused: pytest.ExceptionInfo) -> str:
    assert refused.value.status_code == 422
    (error,) = refused.value.detail
    assert error["loc"] == ["body", "prices"]
    return error["msg"]


def test_agents_say_in_their_info_whether_they_allocate_other_assets(agents):
    assert agents["shared"].info.module_kind == "asset_shared" and agents["shared"].info.transfer is None
    assert "regime probabilities" in agents["regimes"].info.transfer
    assert agents["flat"].info.module_kind == "mlp" and "flat" in agents["flat"].info.transfer
    assert can_allocate(agents["shared"].info, OTHERS) and not can_allocate(agents["flat"].info, OTHERS)
    assert can_allocate(agents["flat"].info, ASSETS[::-1])  # its own assets, in any order


def test_an_asset_shared_agent_allocates_the_requests_own_assets_in_their_order(agents, tiny):
    request = AllocateRequest.model_validate(other_body())
    closes, held, assets = parse_allocation(request, agents["shared"].info)
    assert assets == OTHERS and closes.shape == (30, 7)
    np.testing.assert_allclose(held, 1 / 7)
    (weights,) = agents["shared"].weights_batch([closes], [held])
    expected = agents["shared"].policy.weights(latest_observation(closes, held, 10, 20))
    np.testing.assert_array_equal(weights, expected)
    own = AllocateRequest.model_validate(body(tiny) | {"prices": dict(reversed(body(tiny)["prices"].items()))})
    assert parse_allocation(own, agents["shared"].info)[2] == tuple(ASSETS)  # its own assets: its own order


def test_a_flat_agent_asked_for_other_assets_gets_a_422_naming_both_lists(agents, tiny):
    asked = body(tiny)
    asked["prices"]["XYZ"] = asked["prices"].pop("GOLD")
    with pytest.raises(HTTPException) as refused:
        parse_allocation(AllocateRequest.model_validate(asked), agents["flat"].info)
    message = detail(refused)
    assert "'flat' was trained on ['STOCK', 'BOND', 'GOLD', 'CRYPTO']" in message
    assert "asked for ['STOCK', 'BOND', 'CRYPTO', 'XYZ']: missing ['GOLD'], unknown ['XYZ']" in message


def test_an_agent_observing_its_universes_regime_model_refuses_other_assets_naming_the_feature(agents):
    with pytest.raises(HTTPException) as refused:
        parse_allocation(AllocateRequest.model_validate(other_body()), agents["regimes"].info)
    message = detail(refused)
    assert "'regimes' allocates only the assets it was trained on, ['STOCK', 'BOND', 'GOLD', 'CRYPTO']" in message
    assert "not ['X000', 'X001'" in message and "regime probabilities (observe_regimes)" in message
    with pytest.raises(ValueError, match=r"'regimes' allocates its 4 training assets only"):
        agents["regimes"].weights_batch([np.ones((140, 7))], [np.full(7, 1 / 7)])  # and the replica itself


def test_one_batch_may_mix_universes_of_different_sizes(agents, tiny):
    requests = [AllocateRequest.model_validate(b) for b in (other_body(7), body(tiny), other_body(3, seed=1))]
    parsed = [parse_allocation(r, agents["shared"].info) for r in requests]
    weights = agents["shared"].weights_batch([p[0] for p in parsed], [p[1] for p in parsed])
    assert [w.shape for w in weights] == [(7,), (4,), (3,)]
    for (closes, held, _), got in zip(parsed, weights):
        np.testing.assert_array_equal(got, agents["shared"].weights_batch([closes], [held])[0])
    baseline = BaselineAgent("equal_weight", tuple(ASSETS), 21)
    assert baseline.info.transfer is None
    assert [w.tolist() for w in baseline.weights_batch([p[0] for p in parsed], [p[1] for p in parsed])] == [
        [1 / 7] * 7,
        [0.25] * 4,
        [1 / 3] * 3,
    ]


def test_the_scorer_skips_requests_over_other_assets_than_the_apps(agents, tiny):
    infos = {name: agent.info for name, agent in agents.items() if name != "regimes"}

    async def start(assets) -> int:
        scorer = Scorer(infos, {}, None, None, 0.001)
        closes, held, _ = parse_allocation(AllocateRequest.model_validate(other_body()), infos["shared"])
        scorer.start(answer(), [1 / 7] * 7, (closes, held), "2026-12-04", None, assets)
        pending = len(scorer.pending)
        for task in list(scorer.pending.values()):
            task.cancel()
        return pending

    def answer():
        from experiments.log_schema import Assignment

        return Assignment(
            request_id="r1",
            experiment="e",
            routed_arm="shared",
            arm="shared",
            weights=(),
            latency_ms=1.0,
            split_version=1,
            model_version="v",
        )

    assert asyncio.run(start(OTHERS)) == 0  # not scored: nothing to price per asset, nothing pending
    assert asyncio.run(start(tuple(ASSETS))) == 1  # the app's own assets: scored after the answer


def ingress_like(answer) -> FastAPI:
    """An app reading ``POST /allocate`` bodies as the ingress does (``UniqueKeysRoute``, its 422s), answering
    ``answer(request)``."""
    app = FastAPI()
    app.router.route_class = UniqueKeysRoute
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.post("/allocate")
    async def allocate(request: AllocateRequest) -> dict:
        return answer(request)

    return app


def test_a_body_naming_an_asset_twice_gets_a_422_naming_it_and_only_a_caller_let_in_learns_it():
    app = ingress_like(lambda request: {"assets": list(request.prices)})
    client, json_type = TestClient(app), {"Content-Type": "application/json"}
    text = '{"prices": {"A": [1.0, 2.0], "B": [1.0, 2.0], "A": [3.0, 4.0]}}'
    response = client.post("/allocate", content=text, headers=json_type)
    assert response.status_code == 422, response.text
    expected = {"loc": ["body", "prices"], "msg": "names ['A'] more than once: name each key once"}
    assert response.json()["detail"] == [expected]
    response = client.post("/allocate", content=text.replace('"A": [3.0', '"C": [3.0'), headers=json_type)
    assert response.status_code == 200 and response.json() == {"assets": ["A", "B", "C"]}
    app.state.token_sha256 = "0" * 64  # a configured token: a caller without it learns nothing of its body
    assert client.post("/allocate", content=text, headers=json_type).status_code == 401


def test_a_body_is_read_to_the_same_floats_and_malformed_json_or_nan_gets_a_422_naming_where():
    app = ingress_like(lambda request: {"prices": {a: [repr(x) for x in c] for a, c in request.prices.items()}})
    client, json_type = TestClient(app), {"Content-Type": "application/json"}
    closes = (100 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.02, (50, 300)), axis=1))).tolist()
    text = json.dumps({"prices": {f"A{i}": row for i, row in enumerate(closes)}})
    response = client.post("/allocate", content=text, headers=json_type)
    assert response.status_code == 200, response.text  # every float exactly as Python's json reads it
    assert response.json()["prices"] == {f"A{i}": [repr(x) for x in row] for i, row in enumerate(closes)}
    response = client.post("/allocate", content='{"prices": {"A": [1.0, 2.0]', headers=json_type)
    assert response.status_code == 422 and response.json()["detail"][0]["type"] == "json_invalid"
    response = client.post("/allocate", content='{"prices": {"A": [1.0, NaN]}}', headers=json_type)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "prices", "A", "1"]


def test_the_request_schema_takes_512_assets_and_refuses_513_naming_the_limit():
    assert MAX_ASSETS == 512
    AllocateRequest.model_validate(other_body(512, n_closes=3))
    with pytest.raises(Exception, match=r"prices\n.*at most 512 items"):
        AllocateRequest.model_validate(other_body(513, n_closes=3))
    assert names([f"A{i}" for i in range(100)]).endswith("'A99'] (100 assets)")
    assert json.dumps(names(["A", "B"])) == json.dumps("['A', 'B']")
