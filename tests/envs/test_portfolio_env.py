"""envs.portfolio_env: the gymnasium contract, causal observations, the wealth identity, episodes and config errors."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given
from hypothesis import strategies as st

import envs
from core.errors import ConfigError
from envs.features import compute_features
from envs.portfolio_env import PortfolioEnv
from tests.support.markets import full_pass

INFO_KEYS = {"wealth", "weights", "target_weights", "turnover", "cost", "log_growth", "net_return", "day"}


# -- gymnasium contract ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action_mode", ["continuous", "discrete"])
@pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value is")  # returns are unbounded
@pytest.mark.filterwarnings("ignore:.*Not able to test alternative render modes")
def test_env_passes_the_gymnasium_checker(tiny, small_config, action_mode):
    env = PortfolioEnv(small_config.model_copy(update={"action_mode": action_mode}), market=tiny.market)

    check_env(env)


def test_the_class_docstring_is_the_spec_and_its_example_runs():
    import doctest

    import envs.portfolio_env as module

    for heading in (
        "Description",
        "Action Space",
        "Observation Space",
        "Rewards",
        "Starting State",
        "Episode End",
        "Arguments",
    ):
        assert f"## {heading}" in PortfolioEnv.__doc__, heading
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0


def test_gymnasium_make_builds_the_env_after_importing_envs():
    env = gymnasium.make(
        envs.ENV_ID, config={"data": {"synthetic_years": 4}, "episode_days": 30, "action_mode": "discrete"}
    )

    assert isinstance(env.unwrapped, PortfolioEnv)
    observation, _ = env.reset(seed=0)
    assert env.observation_space.contains(observation)
    _, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert math.isfinite(reward) and not terminated and not truncated
    assert INFO_KEYS <= set(info)


def test_spaces_match_the_documented_layout(tiny, small_config):
    env = PortfolioEnv(small_config, market=tiny.market)

    assert env.observation_space.shape == (10 * 4 + 4 + 4,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)


def test_discrete_grid_has_35_actions_that_are_valid_weights_and_reach_every_asset(tiny, small_config):
    env = PortfolioEnv(full_pass(small_config).model_copy(update={"action_mode": "discrete"}), market=tiny.market)

    assert env.action_space == gymnasium.spaces.Discrete(35)
    targets = np.array([env.action_to_weights(a) for a in range(35)])
    assert (targets >= 0).all()
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)
    for k in range(4):
        env.reset(seed=0)
        action = next(a for a in range(35) if targets[a, k] == 1.0)
        _, _, _, _, info = env.step(action)
        np.testing.assert_array_equal(info["target_weights"], np.eye(4)[k])
        np.testing.assert_array_equal(info["weights"], np.eye(4)[k])  # a single asset stays 100% after drift


def test_invalid_actions_are_rejected(tiny, small_config):
    continuous = PortfolioEnv(small_config, market=tiny.market)
    discrete = PortfolioEnv(small_config.model_copy(update={"action_mode": "discrete"}), market=tiny.market)
    continuous.reset(seed=0)
    discrete.reset(seed=0)

    with pytest.raises(ValueError, match="action must be 4 finite numbers"):
        continuous.step(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="action must be 4 finite numbers"):
        continuous.step(np.array([0.0, np.nan, 0.0, 0.0], dtype=np.float32))
    with pytest.raises(ValueError, match=r"action 35 is outside Discrete\(35\)"):
        discrete.step(35)


@pytest.mark.parametrize(
    ("continuous_map", "action", "weights"),
    [
        ("softmax", [0.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]),
        ("clip", [1.0, 0.0, -1.0, 1.0], [0.5, 0.0, 0.0, 0.5]),
    ],
)
def test_continuous_action_maps_to_target_weights(tiny, small_config, continuous_map, action, weights):
    env = PortfolioEnv(small_config.model_copy(update={"continuous_map": continuous_map}), market=tiny.market)
    env.reset(seed=0)

    _, _, _, _, info = env.step(np.array(action, dtype=np.float32))

    np.testing.assert_allclose(info["target_weights"], weights)


# -- timing: observe at t, act at t, earn t -> t+1 -------------------------------------------------------------------


@given(
    split=st.sampled_from(["train", "validation", "test"]),
    steps=st.integers(0, 147),
    seed=st.integers(0, 2**32 - 1),
    regimes=st.booleans(),
)
def test_observation_at_t_ignores_prices_after_t(tiny, small_config, perturb_after, split, steps, seed, regimes):
    """With ``observe_regimes`` the model is the one the config carries (as in training, which fills it in before the
    first step; a model fitted on the train split is fitted on the data, before any decision)."""
    config = full_pass(small_config, split)
    if regimes:
        config = config.model_copy(update={"observe_regimes": True, "regimes": regime_config(tiny)})
    original = PortfolioEnv(config, market=tiny.market)
    rng = np.random.default_rng(seed)
    decisions = rng.dirichlet(np.ones(4), size=steps)  # the same trades in both worlds
    t = original.split.first - 1 + steps
    perturbed = PortfolioEnv(config, market=perturb_after(tiny.market, t, seed))

    observations = []
    for env in (original, perturbed):
        observation, _ = env.reset(seed=seed)
        for target in decisions:
            observation, *_ = env.step_weights(target)
        assert env.day == t
        observations.append(observation)

    np.testing.assert_array_equal(observations[1], observations[0])
    np.testing.assert_array_equal(perturbed.weights, original.weights)
    # The perturbation is real: the next observation differs.
    next_target = np.full(4, 0.25)
    assert not np.array_equal(original.step_weights(next_target)[0], perturbed.step_weights(next_target)[0])


def regime_config(tiny):
    """The true law of the tiny market, carried in the config, filtered over 20 days (the features' own warm-up)."""
    from envs.config import RegimeConfig, RegimeParams
    from quant.regimes import from_law

    law = from_law(tiny.params.transition, tiny.params.mu, tiny.params.cov)
    return RegimeConfig(window_days=20, model=RegimeParams.model_validate(law.to_json()))


def test_observed_regimes_are_the_windowed_filter_placed_before_the_weights(tiny, small_config):
    from envs.regimes import model_from_params
    from quant.regimes import windowed_filter

    regimes = regime_config(tiny)
    env = PortfolioEnv(
        full_pass(small_config.model_copy(update={"observe_regimes": True, "regimes": regimes}), "test"),
        market=tiny.market,
    )
    assert env.observation_space.shape == (10 * 4 + 4 + 3 + 4,)
    observation, _ = env.reset(seed=0)
    filtered = windowed_filter(model_from_params(regimes.model), tiny.market.log_returns(), 20)[env.day - 1]
    np.testing.assert_allclose(observation[-7:-4], filtered, rtol=1e-6)
    assert observation[-7:-4].sum() == pytest.approx(1.0, abs=1e-6)


def test_a_regime_model_for_other_assets_is_a_config_error(tiny, small_config):
    regimes = regime_config(tiny)
    two_assets = regimes.model.model_copy(
        update={
            "means": [m[:2] for m in regimes.model.means],
            "covariances": [[r[:2] for r in c[:2]] for c in regimes.model.covariances],
        }
    )
    config = small_config.model_copy(
        update={"observe_regimes": True, "regimes": regimes.model_copy(update={"model": two_assets})}
    )
    with pytest.raises(ConfigError, match=r"regimes\.model: fitted on 2 assets, the data has 4"):
        PortfolioEnv(config, market=tiny.market)


def test_first_observation_is_the_feature_row_of_the_day_before_the_first_return(tiny, small_config):
    env = PortfolioEnv(full_pass(small_config, "validation"), market=tiny.market)

    observation, info = env.reset(seed=0)

    assert info["day"] == env.day == env.split.first - 1
    row = compute_features(tiny.market.closes, 10, 20)[env.day]
    np.testing.assert_array_equal(observation[:-4], row)
    np.testing.assert_array_equal(observation[-4:], np.float32(0.25))


def test_holding_one_asset_earns_its_price_relative_over_the_split(tiny, small_config):
    """The action at day t earns close[t+1] / close[t]: a pass holding asset k multiplies wealth by its price change."""
    env = PortfolioEnv(full_pass(small_config, "test").model_copy(update={"cost_bps": 0.0}), market=tiny.market)
    env.reset(seed=0)
    crypto = np.eye(4)[3]

    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step_weights(crypto)

    closes = tiny.market.closes[:, 3]
    assert info["wealth"] == pytest.approx(closes[env.split.last] / closes[env.split.first - 1], rel=1e-10)
    assert info["day"] == env.split.last


# -- the wealth identity ---------------------------------------------------------------------------------------------


@given(seed=st.integers(0, 2**32 - 1), cost_bps=st.floats(0.0, 200.0), split=st.sampled_from(["validation", "test"]))
def test_final_wealth_is_the_product_of_net_gross_growth(tiny, small_config, seed, cost_bps, split):
    env = PortfolioEnv(full_pass(small_config, split).model_copy(update={"cost_bps": cost_bps}), market=tiny.market)
    closes = tiny.market.closes
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)

    held = np.full(4, 0.25)
    expected_wealth = 1.0
    for _ in range(env.n_steps):
        day = env.day
        target = rng.dirichlet(np.full(4, 0.3))
        _, _, terminated, _, info = env.step_weights(target)
        turnover = np.abs(target - held).sum()  # against the weights held before the trade, after yesterday's drift
        cost = cost_bps / 1e4 * turnover
        relatives = closes[day + 1] / closes[day]
        gross = target @ relatives
        expected_wealth *= (1.0 - cost) * gross
        held = target * relatives / gross
        assert info["turnover"] == pytest.approx(turnover, rel=1e-12)
        assert info["cost"] == pytest.approx(cost, rel=1e-12, abs=1e-18)
        np.testing.assert_allclose(info["weights"], held, rtol=1e-12)

    assert terminated
    assert info["wealth"] == pytest.approx(expected_wealth, rel=1e-10)


# -- episodes --------------------------------------------------------------------------------------------------------


def test_random_starts_differ_across_seeds_and_repeat_with_the_same_seed(tiny, small_config):
    env = PortfolioEnv(small_config, market=tiny.market)

    starts = []
    for seed in range(8):
        observation, info = env.reset(seed=seed)
        again, info_again = env.reset(seed=seed)
        assert info_again["day"] == info["day"]
        np.testing.assert_array_equal(again, observation)
        starts.append(info["day"])

    assert len(set(starts)) > 4
    last_start = env.split.last - small_config.episode_days  # room for a whole episode in the split
    assert all(env.split.first - 1 <= day <= last_start for day in starts)


def test_without_random_start_episodes_begin_on_the_splits_first_decision_day(tiny, small_config):
    env = PortfolioEnv(small_config.model_copy(update={"random_start": False}), market=tiny.market)

    assert {env.reset(seed=seed)[1]["day"] for seed in range(3)} == {env.split.first - 1}


def test_episode_is_truncated_after_episode_days(tiny, small_config):
    env = PortfolioEnv(small_config, market=tiny.market)
    env.reset(seed=3)

    flags = [env.step(env.action_space.sample())[2:4] for _ in range(small_config.episode_days)]

    assert flags[-1] == (False, True)
    assert all(flag == (False, False) for flag in flags[:-1])


def test_whole_split_episode_terminates_on_the_last_return_and_then_refuses_to_step(tiny, small_config):
    env = PortfolioEnv(full_pass(small_config, "test"), market=tiny.market)
    env.reset(seed=0)

    flags = [env.step(np.zeros(4, dtype=np.float32))[2:4] for _ in range(env.n_steps)]

    assert env.n_steps == env.split.n_days == 148
    assert flags[-1] == (True, False) and all(flag == (False, False) for flag in flags[:-1])
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(4, dtype=np.float32))


def test_reset_and_step_report_the_documented_info(tiny, small_config):
    env = PortfolioEnv(small_config, market=tiny.market)

    observation, info = env.reset(seed=0)
    assert {"wealth", "weights", "day"} <= set(info) and info["wealth"] == 1.0
    np.testing.assert_array_equal(info["weights"], 0.25)
    day = info["day"]

    observation, _, _, _, info = env.step(np.array([1.0, -1.0, 0.0, 0.0], dtype=np.float32))
    assert INFO_KEYS <= set(info)
    assert info["day"] == day + 1
    assert info["wealth"] == pytest.approx(math.exp(info["log_growth"]))
    assert info["net_return"] == pytest.approx(math.expm1(info["log_growth"]))
    assert info["turnover"] == pytest.approx(np.abs(info["target_weights"] - 0.25).sum())
    assert info["cost"] == pytest.approx(small_config.cost_bps / 1e4 * info["turnover"])
    np.testing.assert_allclose(observation[-4:], info["weights"], rtol=1e-6)  # observed weights are the drifted ones


# -- rewards ---------------------------------------------------------------------------------------------------------


def play(env: PortfolioEnv, steps: int, seed: int = 0) -> list[tuple[float, dict]]:
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return [env.step(env.action_space.sample())[1::3] for _ in range(steps)]


def test_log_growth_reward_is_scaled_log_growth(tiny, small_config):
    env = PortfolioEnv(small_config.model_copy(update={"reward_scale": 37.0}), market=tiny.market)

    for reward, info in play(env, 30):
        assert reward == pytest.approx(37.0 * info["log_growth"], rel=1e-12)


def test_excess_reward_is_log_growth_over_the_costless_equal_weight_portfolio(tiny, small_config):
    env = PortfolioEnv(
        small_config.model_copy(update={"reward": "excess_log_growth", "reward_scale": 1.0}), market=tiny.market
    )
    env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(30):
        day = env.day
        _, reward, _, _, info = env.step(env.action_space.sample())
        relatives = tiny.market.closes[day + 1] / tiny.market.closes[day]
        assert reward == pytest.approx(info["log_growth"] - math.log(relatives.mean()), rel=1e-9, abs=1e-15)


def test_mean_variance_reward_penalises_squared_returns(tiny, small_config):
    config = small_config.model_copy(update={"reward": "mean_variance", "risk_aversion": 4.0, "reward_scale": 1.0})
    env = PortfolioEnv(config, market=tiny.market)

    for reward, info in play(env, 30):
        net = info["net_return"]
        assert reward == pytest.approx(net - 2.0 * net * net, rel=1e-12)


def test_differential_sharpe_reward_follows_moody_and_saffell(tiny, small_config):
    eta = 0.1
    config = small_config.model_copy(update={"reward": "differential_sharpe", "sharpe_eta": eta, "reward_scale": 1.0})
    env = PortfolioEnv(config, market=tiny.market)

    a = b = 0.0
    for step, (reward, info) in enumerate(play(env, 20)):
        r = info["net_return"]
        variance = b - a * a
        expected = (b * (r - a) - 0.5 * a * (r * r - b)) / variance**1.5 if variance > 1e-12 else 0.0
        assert reward == pytest.approx(expected, rel=1e-9, abs=1e-12)
        a, b = a + eta * (r - a), b + eta * (r * r - b)
        if step == 0:
            assert reward == 0.0  # no variance estimate yet


# -- configuration ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"window_dayz": 5}, r"env_config: window_dayz: Extra inputs are not permitted"),
        ({"cost_bps": -1}, r"env_config: cost_bps: .*greater than or equal to 0"),
        ({"action_mode": "pick_one"}, r"env_config: action_mode: .*'continuous' or 'discrete'"),
        ({"split": "holdout"}, r"env_config: split: "),
        ({"data": {"ffill_limit": -1}}, r"env_config: data\.ffill_limit: "),
        ({"data": {"pth": "x.csv"}}, r"env_config: data\.pth: Extra inputs are not permitted"),
        ({"window_days": -1, "reward": "sharpe"}, r"window_days: .*; reward: "),  # every bad field, in one message
    ],
)
def test_bad_env_config_is_a_config_error_naming_the_field(tiny, config, message):
    with pytest.raises(ConfigError, match=message):
        PortfolioEnv(config, market=tiny.market)


def test_episode_longer_than_the_split_is_a_config_error(tiny, small_config):
    config = small_config.model_copy(update={"split": "test", "episode_days": 149})

    with pytest.raises(
        ConfigError, match=r"env_config\.episode_days: 149 exceeds the 148 trading days of the 'test' split"
    ):
        PortfolioEnv(config, market=tiny.market)
    assert PortfolioEnv(config.model_copy(update={"episode_days": 148}), market=tiny.market).n_steps == 148


def test_env_loads_the_csv_its_config_names(tmp_path, tiny, small_config):
    path = tmp_path / "prices.csv"
    tiny.market.to_csv(path)
    config = small_config.model_dump()
    config["data"] = {"path": str(path), "assets": ["GOLD", "STOCK"]}

    env = PortfolioEnv(config)

    assert env.assets == ("GOLD", "STOCK")
    assert env.action_space.shape == (2,)
    np.testing.assert_allclose(env.market.closes[:, 0], tiny.market.closes[:, 2], rtol=1e-7)
