"""The Serve app with an agent that observes regimes, over real HTTP: the server filters the posted closes exactly as
the env filtered its prices, refuses windows too short for the filter to forget its start, and serves the
``regime_growth`` baseline with the agent's fitted law."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from envs.config import RegimeConfig, RegimeParams
from envs.portfolio_env import PortfolioEnv
from policies.load import load_policy
from quant.regimes import from_law
from tests.support.agents import export_untrained
from tests.support.markets import ASSETS
from tests.support.paths import free_port

pytestmark = pytest.mark.ray

WINDOW = 60  # days of returns the regime filter runs over


@pytest.fixture(scope="module")
def regime_models(tiny, small_config, tmp_path_factory):
    """One untrained PPO agent on the tiny market that observes regimes filtered with the market's (true) law."""
    root = tmp_path_factory.mktemp("serve-regimes")
    law = from_law(tiny.params.transition, tiny.params.mu, tiny.params.cov)
    regimes = RegimeConfig(window_days=WINDOW, model=RegimeParams.model_validate(law.to_json()))
    config = small_config.model_copy(
        update={"observe_regimes": True, "regimes": regimes, "continuous_map": "softmax_delta"}
    )
    export_untrained(PortfolioEnv(config, market=tiny.market), "ppo", root, root / "models", agent="ppo_regimes")
    return root / "models"


@pytest.fixture(scope="module")
def client(ray_local, regime_models):
    from ray import serve

    from serving.builder import build_app
    from serving.lifecycle import shutdown_serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = build_app(
        {
            "models_dir": str(regime_models),
            "split": {"ppo_regimes": 1.0},
            "baselines": ["equal_weight", "regime_growth"],
        }
    )
    serve.run(app, name="rlportfolio", route_prefix="/")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield http
    shutdown_serve()


def prices(tiny, day: int, n: int) -> dict:
    closes = tiny.market.closes[day - n + 1 : day + 1]
    return {a: closes[:, k].tolist() for k, a in enumerate(ASSETS)}


def test_the_server_filters_regimes_exactly_as_the_env_did(client, tiny, regime_models):
    policy, meta = load_policy(regime_models / "ppo_regimes")
    agents = {a["name"]: a for a in client.get("/agents").json()}
    assert agents["ppo_regimes"]["closes_needed"] == agents["regime_growth"]["closes_needed"] == WINDOW + 1

    env = PortfolioEnv(
        meta.env_config.model_copy(update={"split": "test", "random_start": False, "episode_days": None}),
        market=tiny.market,
    )
    observation, _ = env.reset(seed=0)
    for _ in range(25):
        observation, *_ = env.step_weights(np.array([0.4, 0.3, 0.2, 0.1]))
    held = dict(zip(ASSETS, env.weights.tolist()))
    body = {"prices": prices(tiny, env.day, WINDOW + 1), "weights": held}
    answer = client.post("/allocate", json=body, headers={"X-Agent": "ppo_regimes"}).json()
    np.testing.assert_allclose(
        [answer["weights"][a] for a in ASSETS], policy.weights(observation), rtol=1e-5, atol=1e-7
    )


def test_a_window_too_short_for_the_filter_is_refused_naming_the_need(client, tiny):
    answer = client.post("/allocate", json={"prices": prices(tiny, 500, WINDOW)}, headers={"X-Agent": "ppo_regimes"})
    assert answer.status_code == 422
    assert (
        answer.json()["detail"][0]["msg"] == f"need at least {WINDOW + 1} closes per asset (oldest first), got {WINDOW}"
    )


def test_regime_growth_is_served_with_the_agents_fitted_law(client, tiny):
    """The growth-optimal mix of the one-day predictive mixture, computed here from the law's own parameters with
    scipy (the Gaussian densities, the forward filter over the posted returns from the stationary distribution, and
    SLSQP on the simplex), not with the project's filter or solver."""
    from scipy.optimize import minimize
    from scipy.stats import multivariate_normal

    closes = tiny.market.closes[500 - WINDOW : 501]
    answer = client.post(
        "/allocate", json={"prices": prices(tiny, 500, WINDOW + 1)}, headers={"X-Agent": "regime_growth"}
    ).json()
    law = tiny.params
    eigenvalues, eigenvectors = np.linalg.eig(law.transition.T)
    belief = np.real(eigenvectors[:, np.argmin(np.abs(eigenvalues - 1))])
    belief /= belief.sum()
    for day in np.diff(np.log(closes), axis=0):
        likelihood = [multivariate_normal(law.mu[k], law.cov[k]).pdf(day) for k in range(len(law.regimes))]
        belief = (belief @ law.transition) * likelihood
        belief /= belief.sum()
    predicted = belief @ law.transition
    mu, cov = predicted @ law.mu, np.einsum("k,kij->ij", predicted, law.cov)
    drift, scale = mu + np.diag(cov) / 2, 1 / np.diag(cov).max()  # scaled: the solver's tolerances are absolute
    best = minimize(
        lambda w: (-scale * (w @ drift - w @ cov @ w / 2), -scale * (drift - cov @ w)),
        np.full(4, 0.25),
        jac=True,
        method="SLSQP",
        bounds=[(0, 1)] * 4,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert answer["agent"] == "regime_growth" and best.success
    np.testing.assert_allclose([answer["weights"][a] for a in ASSETS], best.x, atol=1e-6)
