"""Register ``PortfolioEnv`` under one name, for gymnasium and for RLlib (the one place that does it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from envs.portfolio_env import ENV_ID, PortfolioEnv


def register_gymnasium() -> None:
    """``gymnasium.make("rlportfolio/Portfolio-v0", config={...})``, and ``gymnasium.make_vec(..., num_envs=N,
    vectorization_mode="vector_entry_point", config={...})`` for the batched ``PortfolioVectorEnv``; idempotent."""
    if ENV_ID not in gym.registry:
        gym.register(
            id=ENV_ID,
            entry_point="envs.portfolio_env:PortfolioEnv",
            vector_entry_point="envs.vector_env:PortfolioVectorEnv",
            disable_env_checker=True,
        )


def make_env(env_config: Mapping[str, Any]) -> gym.Env | gym.vector.VectorEnv:
    """RLlib's env creator: a ``PortfolioEnv``, or a ``PortfolioVectorEnv`` when RLlib's vector entry point adds
    ``num_envs`` to the env config (``gym_env_vectorize_mode="vector_entry_point"``)."""
    config = dict(env_config)
    num_envs = config.pop("num_envs", None)
    if num_envs is None:
        return PortfolioEnv(config)
    from envs.vector_env import PortfolioVectorEnv

    return PortfolioVectorEnv(config, num_envs=int(num_envs))


def register_rllib() -> str:
    """Register with Ray Tune's registry so RLlib configs can say ``.environment(ENV_ID, env_config={...})``."""
    from ray.tune.registry import register_env

    register_env(ENV_ID, make_env)
    return ENV_ID
