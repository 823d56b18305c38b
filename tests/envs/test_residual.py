"""Residual policies: the action tilts a classical base, whose weights are the registry's, computed causally, and the
same in the env, the vector env, a backtest and the server's observation."""

from __future__ import annotations

import numpy as np
import pytest

from backtesting.backtest import evaluation_env, run_backtest
from core.errors import ConfigError
from envs.actions import ActionMap, tilt_weights
from envs.bases import ResidualBase, observed_base
from envs.config import EnvConfig
from envs.features import latest_observation
from envs.portfolio_env import PortfolioEnv
from quant.registry import make_baseline


def residual_config(small_config: EnvConfig, **policy) -> EnvConfig:
    return EnvConfig.model_validate(small_config.model_dump() | {"policy": {"base": "regime_growth"} | policy})


@pytest.mark.parametrize("mode", ["continuous", "discrete"])
def test_the_zero_action_is_the_base_exactly(mode, tiny, small_config):
    config = residual_config(small_config, tilt_budget=0.4).model_copy(update={"action_mode": mode})
    env = PortfolioEnv(config, market=tiny.market)
    env.reset(seed=3)
    zero = 0 if mode == "discrete" else np.zeros(4, dtype=np.float32)
    for _ in range(30):
        base = env.base_weights.copy()
        _, _, _, _, info = env.step(zero)
        np.testing.assert_array_equal(info["target_weights"], base)
    assert env.action_space.n == 9 if mode == "discrete" else env.action_space.shape == (4,)


def test_tilts_stay_on_the_simplex_within_the_budget():
    rng = np.random.default_rng(0)
    bases = rng.dirichlet(np.ones(5), size=200)
    bases[:20, :2] = 0.0  # corner bases: an asset at zero stays at zero under a multiplicative tilt
    bases /= bases.sum(axis=1, keepdims=True)
    actions = rng.uniform(-3, 3, size=(200, 5))  # out of bounds: clipped to [-1, 1]
    for budget in (None, 0.05, 0.5, 1.9):
        weights = tilt_weights(actions, bases, scale=2.0, budget=budget)
        assert (weights >= 0).all() and np.allclose(weights.sum(axis=1), 1.0)
        assert (weights[:20, :2] == 0).all()
        if budget is not None:
            assert (np.abs(weights - bases).sum(axis=1) <= budget + 1e-12).all()
    unbounded = tilt_weights(np.clip(actions, -1, 1), bases, scale=2.0)
    np.testing.assert_allclose(tilt_weights(actions, bases, scale=2.0), unbounded)
    single = ActionMap("continuous", 5, residual=True, tilt_scale=2.0, tilt_budget=0.5)
    batch = single.batch(actions, np.full((200, 5), 0.2), bases)
    for i in (0, 57, 199):
        np.testing.assert_allclose(single(actions[i], None, bases[i]), batch[i], atol=1e-15)


def test_discrete_tilts_move_one_asset_up_or_down():
    base = np.array([0.1, 0.2, 0.3, 0.4])
    actions = ActionMap("discrete", 4, residual=True, tilt_scale=0.7)
    assert actions.space().n == 9
    up, down = actions(2, None, base).copy(), actions(6, None, base).copy()  # asset 1 up; asset 1 down
    assert up[1] > base[1] and down[1] < base[1]
    np.testing.assert_allclose(np.delete(up, 1) / np.delete(up, 1).sum(), np.delete(base, 1) / 0.8)
    with pytest.raises(ValueError, match="outside Discrete"):
        actions(9, None, base)
    with pytest.raises(ValueError, match="tilts the base"):
        actions(1, None, None)


@pytest.mark.parametrize("base", ["equal_weight", "regime_growth", "risk_parity"])
def test_the_base_is_the_same_in_the_env_a_backtest_and_the_servers_observation(base, tiny, small_config):
    config = residual_config(small_config, base=base, lookback_days=60)
    env = evaluation_env(config, "validation", market=tiny.market)
    regimes = env.regime_model
    strategy = make_baseline(base, tiny.market.assets, regimes=regimes, regime_window_days=config.regimes.window_days)
    if base == "risk_parity":
        strategy.lookback_days = 60
    strategy.rebalance_every_days = 1
    backtest = run_backtest(strategy, evaluation_env(config, "validation", market=tiny.market))  # same days
    server = ResidualBase(config, tiny.market.assets, regimes)
    observation, _ = env.reset(seed=0)
    for day in range(0, 60):
        history = env.history()
        env_base = env.base_weights
        np.testing.assert_allclose(env_base, backtest.weights[day], atol=2e-7)  # float32 observation vs float64
        served = latest_observation(
            history[-(config.warmup_days + 1) :],
            env.weights,
            config.window_days,
            config.vol_window_days,
            base=server.latest(history),
        )
        np.testing.assert_array_equal(served[-8:], observation[-8:])  # the base and the held weights, as observed
        np.testing.assert_array_equal(observed_base(served, 4), env_base)
        observation, *_ = env.step(np.zeros(4, dtype=np.float32))


def test_the_base_and_its_regime_model_never_see_past_the_train_split(tiny, small_config, perturb_after):
    config = residual_config(small_config)
    env = PortfolioEnv(
        config.model_copy(update={"split": "all", "random_start": False, "episode_days": None}), market=tiny.market
    )
    end_of_train = env.splits["train"].last
    changed = PortfolioEnv(env.config, market=perturb_after(tiny.market, end_of_train, seed=1))
    model, other = env.regime_model, changed.regime_model
    np.testing.assert_array_equal(model.transition, other.transition)
    np.testing.assert_array_equal(model.means, other.means)
    features, later = env.split_arrays[0], changed.split_arrays[0]
    upto = end_of_train - env.first_decision + 1  # decision days up to the end of train
    np.testing.assert_array_equal(features[:upto], later[:upto])
    assert not np.array_equal(features[upto + 5 :], later[upto + 5 :])


def test_bad_residual_configs_are_named(tiny, small_config):
    with pytest.raises(ConfigError, match="policy.base: 'risk_parity' re-estimates"):
        PortfolioEnv(
            residual_config(small_config, base="risk_parity").model_copy(update={"train_paths": "law"}),
            market=tiny.market,
        )
    for bad, field in [
        ({"base": "buy_and_hold"}, "policy.base"),
        ({"base": "equal_weight", "tilt_budget": 0}, "policy.tilt_budget"),
        ({"base": "equal_weight", "tilt_budget": 2.0}, "policy.tilt_budget"),
    ]:
        with pytest.raises(Exception, match=field.replace(".", r"\.")):
            EnvConfig.model_validate({"policy": bad})
    with pytest.raises(Exception, match="continuous_map must be 'softmax'"):
        EnvConfig.model_validate({"policy": {"base": "equal_weight"}, "continuous_map": "softmax_delta"})
    with pytest.raises(ConfigError, match="regime model"):
        ResidualBase(residual_config(small_config), tiny.market.assets, None)
