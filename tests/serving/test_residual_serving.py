"""A residual agent served: the server computes its base from the closes a request posts and decides exactly as the
env (and so every backtest) does on the same day. No Ray: the deployment's own agent object."""

from __future__ import annotations

import numpy as np
import pytest

from backtesting.backtest import PolicyStrategy, evaluation_env, run_backtest
from envs.config import EnvConfig
from envs.portfolio_env import PortfolioEnv
from policies.format import read_metadata
from serving.agents import PolicyAgent
from tests.support.agents import export_untrained


@pytest.mark.parametrize("algo, mode", [("ppo", "continuous"), ("dqn", "discrete")])
def test_a_served_residual_agent_decides_as_its_backtest(algo, mode, tiny, small_config, tmp_path):
    config = EnvConfig.model_validate(
        small_config.model_dump()
        | {"action_mode": mode, "policy": {"base": "regime_growth", "tilt_scale": 1.5, "tilt_budget": 0.6}}
    )
    agent_dir = export_untrained(PortfolioEnv(config, market=tiny.market), algo, tmp_path, tmp_path / "models")
    served = PolicyAgent(agent_dir)
    recorded = []

    def policy(observation):
        weights = served.policy.weights(observation)
        recorded.append((np.array(observation), weights))
        return weights

    env = evaluation_env(read_metadata(agent_dir).env_config, "validation", market=tiny.market)
    result = run_backtest(PolicyStrategy(algo, policy), env)
    closes, first = tiny.market.closes, env.split.first - 1
    need = served.info.closes_needed
    for day in (0, 17, 101, len(recorded) - 1):
        t = first + day
        posted, held = closes[t - need + 1 : t + 1], recorded[day][0][-4:]  # what a request posts
        observation, weights = recorded[day]
        np.testing.assert_array_equal(served.observation(posted, held), observation)
        np.testing.assert_array_equal(served.weights_batch([posted], [held])[0], weights)
    assert len(recorded) == result.returns.size
