"""Universe sampling (universe.sample_assets): each training episode trades K of the data's N assets, drawn anew,
and observes exactly the whole universe's features gathered at those assets' columns; validation and test trade all
N. (The vector env's twin test, tests/envs/test_vector_env.py, plays sampled episodes too.)"""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from backtesting.backtest import evaluation_env
from core.errors import ConfigError
from envs.config import EnvConfig
from envs.features import compute_features
from envs.layout import AssetLayout
from envs.portfolio_env import PortfolioEnv
from envs.vector_env import PortfolioVectorEnv

N_ASSETS, K = 10, 4


def sampled(**fields) -> EnvConfig:
    """The built-in market over ``N_ASSETS`` assets, 6 years, each training episode trading ``K`` of them."""
    base = {
        "data": {"synthetic_assets": N_ASSETS, "synthetic_years": 6},
        "window_days": 5,
        "vol_window_days": 20,
        "episode_days": 30,
        "universe": {"sample_assets": K},
    }
    return EnvConfig.model_validate(base | fields)


def test_each_training_episode_trades_k_of_the_n_assets_drawn_afresh():
    env = PortfolioEnv(sampled())
    assert len(env.assets) == N_ASSETS
    assert env.observation_space.shape == (AssetLayout(5).size(K),) and env.action_space.shape == (K,)
    draws = []
    for seed in range(60):
        observation, info = env.reset(seed=seed)
        assets = env.episode_assets
        assert len(assets) == K == len(set(assets)) and set(assets) <= set(env.assets)
        assert observation.shape == env.observation_space.shape and info["weights"].shape == (K,)
        draws.append(assets)
    assert len(set(draws)) > 50  # 210 subsets of 4 among 10, in 5,040 orders
    assert {a for d in draws for a in d} == set(env.assets)  # every asset's history is played
    assert any(list(d) != sorted(d, key=env.assets.index) for d in draws)  # in random order
    env.reset(seed=3)
    first = env.episode_assets
    env.reset(seed=3)
    assert env.episode_assets == first  # seeded: the same draw


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"observe_regimes": True, "regimes": {"law": "true", "window_days": 20}, "train_paths": "law"},
        {"policy": {"base": "equal_weight"}, "train_paths": "bootstrap", "log_volatility": True},
    ],
    ids=["split", "law paths with regimes", "bootstrap paths with an equal-weight base"],
)
def test_a_sampled_observation_is_the_universe_features_gathered_at_its_assets(fields):
    env = PortfolioEnv(sampled(**fields))
    layout = AssetLayout.of_env(env.config, env.regime_model.n_regimes if env.config.observe_regimes else 0)
    rng = np.random.default_rng(0)
    for episode in range(3):
        observation, _ = env.reset(seed=episode)
        subset = np.array([env.assets.index(a) for a in env.episode_assets])
        features, relatives, _ = env.split_arrays  # the whole universe's, for this episode's split or path
        for _ in range(6):
            universe_row = np.concatenate([features[env._step_index], np.full(N_ASSETS, 1.0 / N_ASSETS)])
            rows_n, market_n = layout.split(universe_row)
            rows_k, market_k = layout.split(observation)
            per_asset = slice(None, -2) if layout.base else slice(None, -1)  # the base is renormalised over K
            np.testing.assert_array_equal(rows_k[:, per_asset], rows_n[subset, per_asset])
            np.testing.assert_array_equal(market_k, market_n)  # extras, regimes: the universe's, whole
            if layout.base:
                np.testing.assert_allclose(rows_k[:, -2], 1.0 / K, rtol=1e-6)  # equal weight over the K traded
            np.testing.assert_array_equal(rows_k[:, -1], env.weights.astype(np.float32))
            day = env._step_index
            observation, _, _, _, info = env.step(rng.uniform(-1, 1, K).astype(np.float32))
            grown = info["target_weights"] * relatives[day, subset]  # the K traded assets' relatives, no others'
            np.testing.assert_allclose(info["weights"], grown / grown.sum(), rtol=1e-12)


def test_sampled_features_equal_the_features_of_the_sampled_closes():
    env = PortfolioEnv(sampled(train_paths="split", log_volatility=True))
    observation, _ = env.reset(seed=4)
    subset = [env.assets.index(a) for a in env.episode_assets]
    day = env.day
    own = compute_features(env.market.closes[: day + 1, subset], 5, 20, log_volatility=True)[day]
    np.testing.assert_allclose(observation[: own.size], own, rtol=1e-5, atol=1e-6)


def test_validation_and_test_splits_trade_every_asset():
    config = sampled()
    for split in ("validation", "test"):
        env = evaluation_env(config, split)
        assert env.sampler is None and env.action_map.n_assets == N_ASSETS
        env.reset(seed=0)
        assert env.episode_assets == env.assets
    assert PortfolioEnv(config.model_copy(update={"split": "validation"})).action_space.shape == (N_ASSETS,)


def test_a_sampled_env_passes_gymnasiums_checks_and_its_vector_env_draws_per_sub_environment():
    check_env(PortfolioEnv(sampled(train_paths="law")), skip_render_check=True)
    vector = PortfolioVectorEnv(sampled(train_paths="law"), num_envs=6)
    vector.reset(seed=0)
    drawn = vector.episode_assets
    assert drawn.shape == (6, K) and len({tuple(row) for row in drawn}) > 1
    assert all(len(set(row)) == K for row in drawn)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"universe": {"sample_assets": 11}}, r"universe\.sample_assets: 11 is more than the 10 assets of synthetic"),
        ({"universe": {"sample_assets": 0}}, r"universe\.sample_assets"),
        ({"policy": {"base": "regime_growth"}}, r"universe\.sample_assets: the residual base 'regime_growth'"),
        ({"policy": {"base": "min_variance"}}, r"universe\.sample_assets: the residual base 'min_variance'"),
    ],
)
def test_impossible_samples_are_config_errors_naming_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        PortfolioEnv(sampled().model_dump(mode="json") | fields)
