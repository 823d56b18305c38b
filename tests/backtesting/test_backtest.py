"""backtesting.backtest: strategies played through the env on identical dates, with the env's own costs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backtesting.backtest import PolicyStrategy, evaluation_env, metrics_table, run_all, run_backtest, run_batched
from core.constants import TRADING_DAYS_PER_YEAR
from envs.config import DataConfig
from envs.market import MarketData
from quant.registry import BaselinesConfig, make_baselines
from quant.strategies import BuyAndHold, EqualWeight, History


@dataclass
class RandomMixes:
    """Trades to a fresh random mix on its schedule; records what it was shown."""

    name: str = "random"
    rebalance_every_days: int = 1
    seed: int = 0
    seen_days: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def weights(self, history: History) -> np.ndarray:
        self.seen_days.append(history.closes.shape[0] - 1)
        return self.rng.dirichlet(np.full(history.closes.shape[1], 0.5))


@dataclass
class Fixed:
    name: str
    weights_to_return: np.ndarray
    rebalance_every_days: int = 1

    def weights(self, history: History) -> np.ndarray:
        return self.weights_to_return


@pytest.fixture(scope="module")
def split_env(tiny, small_config):
    """A whole-pass env over the tiny market's 148-day test split."""
    return evaluation_env(small_config, "test", market=tiny.market)


# -- the wealth identity ---------------------------------------------------------------------------------------------


@given(seed=st.integers(0, 2**32 - 1), cost_bps=st.floats(0.0, 100.0), every=st.integers(1, 10))
def test_final_wealth_is_the_product_of_one_minus_cost_times_gross_return(tiny, small_config, seed, cost_bps, every):
    env = evaluation_env(small_config.model_copy(update={"cost_bps": cost_bps}), "test", market=tiny.market)
    result = run_backtest(RandomMixes(rebalance_every_days=every, seed=seed), env)
    closes = tiny.market.closes[env.split.first - 1 : env.split.last + 1]

    held = np.full(4, 0.25)  # every backtest starts from the env's equal-weight book
    wealth = 1.0
    for day, target in enumerate(result.weights):
        cost = cost_bps / 1e4 * np.abs(target - held).sum()
        relatives = closes[day + 1] / closes[day]
        gross = target @ relatives
        wealth *= (1.0 - cost) * gross
        assert result.costs[day] == pytest.approx(cost, rel=1e-12, abs=1e-15)  # hold days: float-noise turnover
        held = target * relatives / gross

    assert result.wealth[-1] == pytest.approx(wealth, rel=1e-10)
    np.testing.assert_allclose(result.wealth, np.cumprod(1.0 + result.returns), rtol=1e-10)
    np.testing.assert_allclose(result.log_growth.sum(), np.log(wealth), rtol=1e-9, atol=1e-12)


def test_costs_are_zero_without_cost_bps_and_reduce_wealth_with_them(tiny, small_config):
    free = run_backtest(
        RandomMixes(seed=1), evaluation_env(small_config.model_copy(update={"cost_bps": 0.0}), "test", tiny.market)
    )
    costly = run_backtest(
        RandomMixes(seed=1), evaluation_env(small_config.model_copy(update={"cost_bps": 25.0}), "test", tiny.market)
    )

    np.testing.assert_array_equal(free.costs, 0.0)
    assert free.turnover.sum() > 10  # the strategy does trade
    np.testing.assert_allclose(costly.turnover, free.turnover)  # the same trades
    np.testing.assert_allclose(costly.costs, 25e-4 * costly.turnover)
    assert costly.wealth[-1] < free.wealth[-1]
    assert costly.wealth[-1] == pytest.approx(free.wealth[-1] * np.prod(1.0 - costly.costs), rel=1e-10)


def test_buy_and_hold_never_trades_and_ends_with_the_average_price_relative(tiny, split_env):
    result = run_backtest(BuyAndHold("buy_and_hold", 1), split_env)

    np.testing.assert_allclose(result.turnover, 0.0, atol=1e-12)
    np.testing.assert_allclose(result.costs, 0.0, atol=1e-15)
    closes = tiny.market.closes
    relatives = closes[split_env.split.last] / closes[split_env.split.first - 1]
    assert result.wealth[-1] == pytest.approx(relatives.mean(), rel=1e-10)  # equal money in each asset, never touched


def test_strategy_is_consulted_only_on_its_schedule_and_holds_in_between(split_env):
    strategy = RandomMixes(rebalance_every_days=5, seed=2)

    result = run_backtest(strategy, split_env)

    first = split_env.split.first - 1
    assert strategy.seen_days == list(range(first, first + split_env.n_steps, 5))
    off_schedule = np.arange(split_env.n_steps) % 5 != 0
    np.testing.assert_allclose(result.turnover[off_schedule], 0.0, atol=1e-12)
    assert (result.turnover[~off_schedule][1:] > 0).all()


def test_strategy_sees_closes_up_to_the_decision_day_only(split_env):
    strategy = RandomMixes()

    run_backtest(strategy, split_env)

    assert strategy.seen_days == list(range(split_env.split.first - 1, split_env.split.last))


def test_policy_strategy_decides_from_the_env_observation(split_env):
    observations = []

    def policy(observation: np.ndarray) -> np.ndarray:
        observations.append(observation)
        return np.full(4, 0.25)

    run_backtest(PolicyStrategy("policy", policy), split_env)

    first_observation, _ = split_env.reset(seed=0)
    assert len(observations) == split_env.n_steps
    np.testing.assert_array_equal(observations[0], first_observation)


def test_run_batched_plays_each_env_as_run_backtest_does(tiny, small_config):
    """Lockstep validation over several paths gives each path exactly what a one-env backtest gives."""

    def policy_batch(observations: np.ndarray) -> np.ndarray:
        logits = observations[:, -4:] + np.tanh(observations[:, :4])  # depends on the observation and the book
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    envs = [evaluation_env(small_config, split, market=tiny.market) for split in ("validation", "test")]
    assert envs[0].n_steps == envs[1].n_steps

    batched = run_batched("p", policy_batch, envs)

    for env, result in zip(envs, batched):
        alone = run_backtest(PolicyStrategy("p", lambda o: policy_batch(o[None, :])[0]), env)
        np.testing.assert_array_equal(result.dates, alone.dates)
        np.testing.assert_allclose(result.wealth, alone.wealth, rtol=1e-12)
        np.testing.assert_allclose(result.weights, alone.weights, rtol=1e-12)


def test_run_batched_refuses_envs_of_different_lengths(tiny, small_config):
    envs = [evaluation_env(small_config, split, market=tiny.market) for split in ("train", "test")]
    with pytest.raises(ValueError, match="one length"):
        run_batched("p", lambda o: np.full((len(o), 4), 0.25), envs)


# -- comparisons -----------------------------------------------------------------------------------------------------


def test_all_strategies_are_backtested_on_identical_dates(tiny, split_env):
    strategies = make_baselines(tiny.market.assets, BaselinesConfig(lookback_days=60)) + [RandomMixes()]

    results = run_all(strategies, split_env)

    assert list(results) == [s.name for s in strategies]
    expected_dates = tiny.market.dates[split_env.split.first : split_env.split.last + 1]
    for result in results.values():
        np.testing.assert_array_equal(result.dates, expected_dates)
        assert len(result.returns) == len(result.wealth) == result.weights.shape[0] == split_env.n_steps == 148


def test_evaluation_env_walks_the_whole_split_whatever_the_training_config(tiny, small_config):
    config = small_config.model_copy(update={"random_start": True, "episode_days": 30})

    env = evaluation_env(config, "validation", market=tiny.market)

    assert (env.config.split, env.config.random_start, env.config.episode_days) == ("validation", False, None)
    assert env.reset(seed=123)[1]["day"] == env.split.first - 1
    assert run_backtest(EqualWeight("equal_weight", 1), env).returns.shape == (env.split.n_days,)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.array([0.5, 0.5, 0.5, 0.5]), "must be non-negative and sum to 1"),
        (np.array([1.5, -0.5, 0.0, 0.0]), "must be non-negative and sum to 1"),
        (np.array([0.5, 0.5]), "must be 4 finite numbers"),
        (np.array([np.nan, 0.5, 0.25, 0.25]), "must be 4 finite numbers"),
    ],
)
def test_invalid_strategy_weights_raise_naming_the_strategy_and_day(split_env, tiny, weights, message):
    first_day = tiny.market.dates[split_env.split.first - 1]

    with pytest.raises(ValueError, match=f"strategy 'broken' on {first_day}: weights {message}"):
        run_backtest(Fixed("broken", weights), split_env)


def test_metrics_table_has_one_row_per_strategy(split_env):
    results = run_all([EqualWeight("equal_weight", 21), BuyAndHold("buy_and_hold", 1)], split_env)

    table = metrics_table(results)

    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["equal_weight", "buy_and_hold"]
    assert {"annual_return", "sharpe", "max_drawdown", "cvar_95", "annual_turnover", "total_cost"} <= set(table.columns)
    assert table.loc["buy_and_hold", "annual_turnover"] == pytest.approx(0.0, abs=1e-9)
    assert table.loc["equal_weight", "total_cost"] == pytest.approx(results["equal_weight"].costs.sum())


def test_sharpe_uses_the_risk_free_rate_known_at_each_decision(tiny, small_config):
    rf = np.linspace(0.0, 0.05, tiny.market.n_days)
    market = MarketData(tiny.market.dates, tiny.market.closes, tiny.market.assets, extras={"rf": rf})
    config = small_config.model_copy(update={"data": DataConfig(extra_columns=("rf",), rf_column="rf")})
    env = evaluation_env(config, "test", market=market)

    result = run_backtest(EqualWeight("equal_weight", 1), env)

    np.testing.assert_allclose(result.rf_daily, rf[env.split.first - 1 : env.split.last] / TRADING_DAYS_PER_YEAR)
    excess = result.returns - result.rf_daily
    assert result.metrics()["sharpe"] == pytest.approx(excess.mean() / excess.std(ddof=1) * np.sqrt(252))
