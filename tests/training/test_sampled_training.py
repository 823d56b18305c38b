"""``universe.sample_assets``: an asset-shared PPO agent trains on 2 of the data's 4 assets per episode on a real
local Ray, is validated and exported over all 4, and the export records the module kind and its features."""

from __future__ import annotations

import numpy as np
import pytest

from envs.features import latest_observation
from envs.portfolio_env import PortfolioEnv
from envs.regimes import model_from_params
from policies.load import load_policy
from tests.support.markets import fast_overrides
from training.config import resolve_train_config
from training.train import train


@pytest.mark.ray
def test_an_agent_trained_on_sampled_assets_is_validated_and_exported_over_the_whole_universe(
    ray_local, tiny_csv, tmp_path
):
    overrides = fast_overrides("ppo", tiny_csv, timesteps=1000)
    overrides["env"] |= {"universe": {"sample_assets": 2}, "policy": {"base": "none"}}
    overrides["model"] |= {"kind": "asset_shared"}
    config = resolve_train_config("ppo", overrides=overrides)
    assert PortfolioEnv(config.env).action_space.shape == (2,)  # what every training episode trades
    summary = train(config, agent="sampled", runs_dir=tmp_path / "runs", models_dir=tmp_path / "models", gate=False)
    assert summary["env_steps"] >= 1000

    policy, meta = load_policy(tmp_path / "models" / "sampled")
    assert meta.module.kind == "asset_shared" and meta.env_config.universe.sample_assets == 2
    assert len(meta.assets) == 4 and meta.observation.size == meta.module.features.asset_layout.size(4)
    assert np.isfinite(meta.validation["mean_daily_log_growth"])  # validated over all 4 assets
    assert policy.layout.n_regimes == meta.observation.n_regimes > 0  # the universe's regimes, observed whole
    spec = meta.observation
    observation = latest_observation(
        PortfolioEnv(meta.env_config).market.closes[:400],
        np.full(4, 0.25),
        spec.window_days,
        spec.vol_window_days,
        log_volatility=spec.log_volatility,
        regimes=model_from_params(meta.env_config.regimes.model),
        regime_window_days=spec.regime_window_days,
    )
    weights = policy.weights(observation)
    assert weights.shape == (4,) and abs(weights.sum() - 1) < 1e-9
