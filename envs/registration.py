"""Register ``PortfolioEnv`` under one name, for gymnasium and for RLlib (the one place that does it)."""

from __future__ import annotations

import gymnasium as gym

from envs.portfolio_env import ENV_ID, PortfolioEnv


def register_gymnasium() -> None:
    """``gymnasium.make("rlportfolio/Portfolio-v0", config={...})``; idempotent."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="envs.portfolio_env:PortfolioEnv", disable_env_checker=True)


def register_rllib() -> str:
    """Register with Ray Tune's registry so RLlib configs can say ``.environment(ENV_ID, env_config={...})``."""
    from ray.tune.registry import register_env

    register_env(ENV_ID, lambda env_config: PortfolioEnv(dict(env_config)))
    return ENV_ID
