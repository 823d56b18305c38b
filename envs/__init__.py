"""Market data, causal features and the ``PortfolioEnv`` gymnasium environment.

Importing ``envs`` registers the env with gymnasium as ``rlportfolio/Portfolio-v0``.
"""

from envs.portfolio_env import ENV_ID, PortfolioEnv
from envs.registration import register_gymnasium, register_rllib

register_gymnasium()

__all__ = ["ENV_ID", "PortfolioEnv", "register_gymnasium", "register_rllib"]
