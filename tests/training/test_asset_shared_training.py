"""``model.kind: asset_shared``: build_algorithm_config picks the asset-shared modules, and PPO and SAC train them on
a real local Ray, export them, and the exported policy allocates its own 4 assets and a 20-asset universe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError
from envs.actions import ActionMap
from envs.layout import AssetLayout
from envs.portfolio_env import PortfolioEnv
from policies.load import load_policy
from policies.policy import Policy
from policies.shared_ppo import AssetSharedPPOModule
from policies.shared_sac import AssetSharedSACModule
from tests.support.markets import fast_overrides
from tests.training.test_train import assert_the_export_acts_as_the_trained_module
from training.algorithms import build_algorithm_config
from training.config import resolve_train_config, with_regime_model
from training.train import train

MODULES = {"ppo": AssetSharedPPOModule, "sac": AssetSharedSACModule}


def shared_config(algo: str, data: Path, timesteps: int = 1000, **extra):
    overrides = fast_overrides(algo, data, timesteps=timesteps, **extra)
    # Two regimes, one EM start: the fit takes a second where the default BIC search over 1..4 takes a minute.
    overrides["env"] = overrides["env"] | {"regimes": {"n_regimes": 2, "restarts": 1}}
    return resolve_train_config(algo, overrides=overrides | {"model": {"hidden": [16, 16], "kind": "asset_shared"}})


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_asset_shared_config_builds_the_module_for_the_envs_layout(tiny_csv, algo):
    config = shared_config(algo, tiny_csv)
    env = PortfolioEnv(config.env)
    config = with_regime_model(config, env)
    spec = build_algorithm_config(config).rl_module_spec
    assert spec.module_class is MODULES[algo]
    layout = AssetLayout.from_json(spec.model_config["layout"])
    assert layout.size(len(env.assets)) == env.observation_space.shape[0]
    assert layout.n_regimes == env.regime_model.n_regimes and layout.base == (config.env.policy.base != "none")
    assert spec.model_config["hidden"] == [16, 16] and spec.model_config["squash"] == config.model.squash
    mlp = build_algorithm_config(config.model_copy(update={"model": config.model.model_copy(update={"kind": "mlp"})}))
    assert mlp.rl_module_spec.module_class not in MODULES.values()


def test_asset_shared_without_the_regime_model_it_counts_regimes_from_is_a_config_error(tiny_csv):
    config = shared_config("ppo", tiny_csv)
    assert config.env.observe_regimes and config.env.regimes.model is None
    with pytest.raises(ConfigError, match="env.regimes.model is empty"):
        build_algorithm_config(config)


@pytest.mark.ray
@pytest.mark.parametrize("algo, timesteps", [("ppo", 2000), ("sac", 2000)])
def test_asset_shared_trains_exports_and_the_export_allocates_any_universe(
    ray_local, tiny_csv, tmp_path, algo, timesteps
):
    config = shared_config(algo, tiny_csv, timesteps=timesteps)
    if algo == "sac":  # one replayed transition per env step (configs/sac.yaml: 8): the wiring, in seconds
        config = config.model_copy(update={"hyperparameters": config.hyperparameters | {"training_intensity": 1}})
    summary = train(config, agent=algo, runs_dir=tmp_path / "runs", models_dir=tmp_path / "models", gate=False)
    assert summary["env_steps"] >= timesteps
    agent_dir = tmp_path / "models" / algo
    policy, meta = load_policy(agent_dir)
    assert type(policy.module) is MODULES[algo]
    assert_the_export_acts_as_the_trained_module(summary, agent_dir)

    layout = AssetLayout.from_json(policy.module.model_config["layout"])
    rng, n_assets = np.random.default_rng(0), 20
    rows_at, market_at = layout.split(np.arange(layout.size(n_assets)))
    obs = np.zeros((8, layout.size(n_assets)), dtype=np.float32)
    obs[:, market_at] = rng.dirichlet(np.ones(layout.n_global), size=8)
    window = layout.window_days
    obs[:, rows_at[:, :window]] = rng.normal(size=(8, n_assets, window))  # returns
    obs[:, rows_at[:, window]] = rng.normal(-4.5, 0.3, size=(8, n_assets))  # log volatility
    for column in range(window + 1, layout.per_asset):  # the base's weights and the weights held
        obs[:, rows_at[:, column]] = rng.dirichlet(np.ones(n_assets), size=8)
    weights = Policy(policy.module, ActionMap.from_config(meta.env_config, n_assets)).weights_batch(obs)
    assert weights.shape == (8, n_assets) and (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)
