"""The tiny synthetic market's shape, env configs and training overrides that make a run take seconds."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from envs.config import EnvConfig
from envs.market import MarketData
from envs.synthetic import MarketParams

ASSETS = ["STOCK", "BOND", "GOLD", "CRYPTO"]

# The configured classical baselines, in report order, when no regime model is at hand (configs/evaluation.yaml).
BASELINE_NAMES = (
    "equal_weight",
    "buy_and_hold",
    "fixed_mix",
    "min_variance",
    "mean_variance",
    "risk_parity",
    "growth_optimal",
)
# With the regime baseline and a synthetic market's three oracles.
STRATEGY_NAMES = BASELINE_NAMES + ("regime_growth", "oracle_constant_mix", "oracle_filtered", "oracle_regime_aware")


class TinyMarket(NamedTuple):
    """The default synthetic law over a few years: market, true parameters and regime path."""

    market: MarketData
    params: MarketParams
    regimes: np.ndarray


def full_pass(config: EnvConfig, split: str = "train") -> EnvConfig:
    """``config`` playing the whole ``split`` once, from its first day."""
    return config.model_copy(update={"split": split, "random_start": False, "episode_days": None})


FAST_ENV = {"window_days": 10, "vol_window_days": 20, "episode_days": 100}
# The promotion gate's logic, not its power: few paths and resamples, the cheap baselines (tests/training/test_gate.py
# checks the decisions themselves).
FAST_GATE = {"paths": 16, "estimated_paths": 2, "resamples": 200, "baselines": ["equal_weight", "regime_growth"]}
FAST_HYPERPARAMETERS = {
    "ppo": {"train_batch_size_per_learner": 500, "minibatch_size": 250, "num_epochs": 2},
    "sac": {"train_batch_size_per_learner": 64, "num_steps_sampled_before_learning_starts": 200},
    "dqn": {"train_batch_size_per_learner": 64, "num_steps_sampled_before_learning_starts": 200},
}


def fast_overrides(algo: str, data: Path, timesteps: int = 1000, **extra) -> dict:
    """Config overrides that make a training run take seconds: small windows, batches and budgets."""
    return {
        "env": {**FAST_ENV, "data": {"path": str(data)}},
        "hyperparameters": FAST_HYPERPARAMETERS[algo],
        "timesteps": timesteps,
        "model": {"hidden": [16, 16]},
        "gate": FAST_GATE,
        **extra,
    }
