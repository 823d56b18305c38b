"""envs.registration: one name for gymnasium and RLlib, registered without starting Ray."""

from __future__ import annotations

import gymnasium

import envs
from envs.portfolio_env import PortfolioEnv
from envs.registration import register_gymnasium, register_rllib


def test_importing_envs_registers_the_gymnasium_id_once():
    assert envs.ENV_ID == "rlportfolio/Portfolio-v0"
    assert envs.ENV_ID in gymnasium.registry

    register_gymnasium()  # idempotent: a second call neither fails nor re-registers

    assert gymnasium.registry[envs.ENV_ID].entry_point == "envs.portfolio_env:PortfolioEnv"


def test_rllib_registration_builds_the_env_from_an_env_config_without_starting_ray():
    import ray
    from ray.tune.registry import ENV_CREATOR, _global_registry

    name = register_rllib()

    assert name == envs.ENV_ID
    creator = _global_registry.get(ENV_CREATOR, name)
    env = creator({"data": {"synthetic_years": 4}, "episode_days": 30, "action_mode": "discrete"})
    assert isinstance(env, PortfolioEnv)
    assert env.config.action_mode == "discrete" and env.market.n_days == 4 * 252 + 1
    assert not ray.is_initialized()
