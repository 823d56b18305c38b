"""The served app over other assets than its agents': an asset-shared agent allocates a request's own universe (200
assets; 512 with 300 closes each, within the body limit), 513 are refused naming the limit, and agents whose
features tie them to their training assets are refused naming why (tests/serving/test_transfer.py has the rules)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from envs.config import EnvConfig
from envs.portfolio_env import PortfolioEnv
from serving.http import MAX_BODY_BYTES
from serving.schemas import MAX_ASSETS
from tests.support.agents import export_untrained
from tests.support.markets import ASSETS
from tests.support.paths import free_port
from tests.support.serving import body
from tests.support.shared_agents import export_shared

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def client(ray_local, tiny, small_config, tmp_path_factory):
    """The app serving ``shared`` (asset-shared, all traffic), ``regimes`` (asset-shared, observes its universe's
    regime model) and ``flat`` (an mlp PPO), all trained on the tiny market's 4 assets, with equal weight."""
    from ray import serve

    from serving.builder import build_app

    root = tmp_path_factory.mktemp("universe")
    models = root / "models"
    regimes = EnvConfig.model_validate(
        small_config.model_dump() | {"observe_regimes": True, "regimes": {"law": "true"}}
    )
    export_shared(PortfolioEnv(small_config, market=tiny.market), root, models)
    export_shared(PortfolioEnv(regimes, market=tiny.market), root, models, agent="regimes")
    export_untrained(PortfolioEnv(small_config, market=tiny.market), "ppo", root, models, agent="flat")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {
        "models_dir": str(models),
        "split": {"shared": 1.0},
        "baselines": ["equal_weight"],
        "experiment_log": f"sqlite:///{root / 'experiments.db'}",
    }
    serve.run(build_app(args), name="universe", route_prefix="/")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        yield http
    serve.shutdown()


def universe(n_assets: int, n_closes: int, seed: int = 0) -> dict:
    """A body over ``n_assets`` assets none of the agents was trained on, closes at full float precision."""
    rng = np.random.default_rng(seed)
    closes = rng.uniform(1, 5000, n_assets) * np.exp(np.cumsum(rng.normal(0, 0.02, (n_closes, n_assets)), axis=0))
    return {"prices": {f"ASSET{k:04d}": closes[:, k].tolist() for k in range(n_assets)}}


def message(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    return json.dumps(response.json()["detail"])


def test_an_asset_shared_agent_allocates_200_and_512_assets_and_513_get_a_422_naming_the_limit(client):
    for n_assets, n_closes in ((200, 30), (MAX_ASSETS, 300)):
        payload = universe(n_assets, n_closes)
        size = len(json.dumps(payload))
        assert size < MAX_BODY_BYTES
        response = client.post("/allocate", json=payload)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["agent"] == "shared" and list(answer["weights"]) == list(payload["prices"])
        weights = np.array(list(answer["weights"].values()))
        assert (weights >= 0).all() and abs(weights.sum() - 1) < 1e-9 and len(np.unique(weights.round(9))) > 1
    assert size > 2_500_000  # 512 assets x 300 closes at full precision: about 3.0 MB
    refused = message(client.post("/allocate", json=universe(MAX_ASSETS + 1, 30)))
    assert '"prices"' in refused and "512" in refused


def test_agents_tied_to_their_training_assets_are_refused_naming_why(client, tiny):
    payload = universe(7, 30)
    refused = message(client.post("/allocate", json=payload, headers={"X-Agent": "flat"}))
    assert f"'flat' was trained on {ASSETS}" in refused.replace('\\"', '"').replace('"', "'")
    assert "asked for ['ASSET0000'" in refused.replace('"', "'")
    refused = message(client.post("/allocate", json=payload, headers={"X-Agent": "regimes"}))
    assert "'regimes' allocates only the assets it was trained on" in refused and "regime probabilities" in refused
    own = client.post("/allocate", json=body(tiny), headers={"X-Agent": "flat"})  # its own assets: answered
    assert own.status_code == 200 and set(own.json()["weights"]) == set(ASSETS)
    text = json.dumps(payload).replace('"ASSET0001"', '"ASSET0000"')
    refused = message(client.post("/allocate", content=text, headers={"Content-Type": "application/json"}))
    assert "ASSET0000" in refused and "more than once" in refused


def test_a_request_over_other_assets_is_answered_and_takes_a_scalar_report_only(client):
    payload = universe(9, 30)
    request_id = client.post("/allocate", json=payload).json()["request_id"]
    returns = {asset: 0.001 for asset in payload["prices"]}
    refused = message(client.post("/feedback", json={"request_id": request_id, "asset_returns": returns}))
    assert "asset_returns" in refused
    reply = client.post("/feedback", json={"request_id": request_id, "realized_return": 0.002})
    assert reply.status_code == 200 and reply.json()["agent"] == "shared"


def test_agents_describe_their_module_and_whether_they_take_other_assets(client):
    agents = {a["name"]: a for a in client.get("/agents").json()}
    assert (agents["shared"]["module_kind"], agents["shared"]["transfer"]) == ("asset_shared", None)
    assert agents["flat"]["module_kind"] == "mlp" and "flat" in agents["flat"]["transfer"]
    assert "regime" in agents["regimes"]["transfer"]
    assert agents["equal_weight"]["module_kind"] is None and agents["equal_weight"]["transfer"] is None
