"""Backtests: play any strategy over a split, through ``PortfolioEnv``, so costs and returns are the env's own.

Every strategy in one comparison runs on the same return days with the same cost model, from the same initial
book (equal weights, wealth 1); ``run_all`` checks the dates match.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from backtesting import metrics
from core.config import parse_config
from core.constants import TRADING_DAYS_PER_YEAR
from envs.config import EnvConfig
from envs.market import MarketData
from envs.portfolio_env import PortfolioEnv
from quant.strategies import History

log = logging.getLogger(__name__)


class Strategy(Protocol):
    name: str
    rebalance_every_days: int

    def weights(self, history: History) -> np.ndarray: ...


class BatchStrategy(Strategy, Protocol):
    """A strategy that can also decide for several envs at once (``run_batched_strategy``)."""

    def weights_batch(self, histories: Sequence[History]) -> np.ndarray: ...


@dataclass
class PolicyStrategy:
    """Wrap a policy ``observation -> weights`` (e.g. an exported RL agent) as a daily-trading strategy."""

    name: str
    policy: Callable[[np.ndarray], np.ndarray]
    rebalance_every_days: int = 1

    def weights(self, history: History) -> np.ndarray:
        return self.policy(history.observation)


@dataclass
class BacktestResult:
    """Daily series of one strategy over ``N`` return days.

    ``returns`` are net simple returns, ``weights`` ``(N, K)`` the targets traded to at each decision,
    ``turnover`` and ``costs`` per day, ``wealth`` after each day.
    """

    name: str
    dates: np.ndarray
    returns: np.ndarray
    weights: np.ndarray
    turnover: np.ndarray
    costs: np.ndarray
    wealth: np.ndarray
    assets: tuple[str, ...] = ()
    rf_daily: np.ndarray | float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def log_growth(self) -> np.ndarray:
        return np.log1p(self.returns)

    def metrics(self) -> dict[str, float]:
        return metrics.summary(self.returns, self.turnover, self.costs, self.rf_daily)


def evaluation_env(
    env_config: EnvConfig | Mapping[str, Any], split: str, market: MarketData | None = None
) -> PortfolioEnv:
    """A deterministic env that walks the whole ``split`` once (no random start, no truncation)."""
    config = parse_config(EnvConfig, env_config, where="env_config")
    config = config.model_copy(
        update={"split": split, "random_start": False, "episode_days": None, "train_paths": "split"}
    )
    return PortfolioEnv(config, market=market)


def path_env(env_config: EnvConfig | Mapping[str, Any], market: MarketData) -> PortfolioEnv:
    """``evaluation_env`` over every day of ``market`` after the warm-up (split ``all``), e.g. a fresh synthetic path.

    The config's split boundaries, which may be dates of another data set, are replaced: ``all`` ignores them.
    """
    config = parse_config(EnvConfig, env_config, where="env_config")
    config = config.model_copy(
        update={"data": config.data.model_copy(update={"train_end": 0.5, "validation_end": 0.75})}
    )
    return evaluation_env(config, "all", market=market)


def _check_weights(name: str, weights: np.ndarray, n_assets: int, day: Any) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_assets,) or not np.isfinite(weights).all():
        raise ValueError(f"strategy '{name}' on {day}: weights must be {n_assets} finite numbers, got {weights!r}")
    if (weights < -1e-9).any() or abs(weights.sum() - 1.0) > 1e-6:
        raise ValueError(f"strategy '{name}' on {day}: weights must be non-negative and sum to 1, got {weights!r}")
    weights = np.clip(weights, 0.0, None)
    return weights / weights.sum()


class _Tape:
    """One backtest's daily records, filled a step at a time."""

    def __init__(self, n_steps: int, n_assets: int) -> None:
        self.returns, self.turnover, self.costs, self.wealth = (np.empty(n_steps) for _ in range(4))
        self.weights = np.empty((n_steps, n_assets))

    def step(self, env: PortfolioEnv, i: int, target: np.ndarray) -> tuple[np.ndarray, bool]:
        """Trade ``env`` to ``target`` on step ``i`` and record the day: the next observation, and whether the split ended."""
        observation, _, terminated, _, info = env.step_weights(target)
        self.returns[i], self.turnover[i], self.costs[i], self.wealth[i] = (
            info["net_return"],
            info["turnover"],
            info["cost"],
            info["wealth"],
        )
        self.weights[i] = target
        return observation, terminated

    def result(self, name: str, env: PortfolioEnv, terminated: bool) -> BacktestResult:
        if not terminated:
            raise RuntimeError(f"backtest of '{name}' ended before the split did")
        split = env.split
        rf_column = env.config.data.rf_column
        rf_daily = (
            env.market.extras[rf_column][split.first - 1 : split.last] / TRADING_DAYS_PER_YEAR if rf_column else 0.0
        )
        return BacktestResult(
            name=name,
            dates=env.market.dates[split.first : split.last + 1],
            returns=self.returns,
            weights=self.weights,
            turnover=self.turnover,
            costs=self.costs,
            wealth=self.wealth,
            assets=env.assets,
            rf_daily=rf_daily,
        )


def run_backtest(strategy: Strategy, env: PortfolioEnv) -> BacktestResult:
    """Play ``strategy`` over ``env``'s whole split. ``env`` must come from ``evaluation_env``."""
    observation, _ = env.reset(seed=0)
    n_assets = len(env.assets)
    tape = _Tape(env.n_steps, n_assets)
    for i in range(env.n_steps):
        if i % strategy.rebalance_every_days == 0:
            decided = strategy.weights(History(env.history(), env.weights, observation))
            target = _check_weights(strategy.name, decided, n_assets, env.market.dates[env.day])
        else:
            target = np.array(env.weights)
        observation, terminated = tape.step(env, i, target)
    return tape.result(strategy.name, env, terminated)


def run_batched(
    name: str, weights_batch: Callable[[np.ndarray], np.ndarray], envs: Sequence[PortfolioEnv]
) -> list[BacktestResult]:
    """Play a batch policy over several envs of equal length in lockstep: one call per day for all of them.

    ``run_backtest`` asks a strategy for one env's weights at a time; validating an RL policy over many paths that
    way costs one forward pass per path and day. Here each day costs one batched pass.

    :param weights_batch: ``(N, F)`` observations -> ``(N, K)`` target weights (e.g. ``Policy.weights_batch``).
    :param envs: from ``evaluation_env`` or ``path_env``, all with the same number of steps.
    """
    return _lockstep(name, lambda observations, envs: weights_batch(observations), envs, 1)


def run_batched_strategy(strategy: BatchStrategy, envs: Sequence[PortfolioEnv]) -> list[BacktestResult]:
    """``run_batched`` for a strategy that decides from each env's history (``weights_batch(histories)``), on its
    own rebalance schedule: e.g. ``FilteredGrowth`` over many held-out paths, one batched solve a day."""

    def decide(observations: np.ndarray, envs: Sequence[PortfolioEnv]) -> np.ndarray:
        return strategy.weights_batch([History(e.history(), e.weights, o) for e, o in zip(envs, observations)])

    return _lockstep(strategy.name, decide, envs, strategy.rebalance_every_days)


def _lockstep(
    name: str,
    decide: Callable[[np.ndarray, Sequence[PortfolioEnv]], np.ndarray],
    envs: Sequence[PortfolioEnv],
    rebalance_every_days: int,
) -> list[BacktestResult]:
    n_steps = {env.n_steps for env in envs}
    if len(n_steps) != 1:
        raise ValueError(f"a lockstep backtest needs envs of one length, got {sorted(n_steps)} steps")
    n_steps, n_assets = n_steps.pop(), len(envs[0].assets)
    observations = np.stack([env.reset(seed=0)[0] for env in envs])
    tapes = [_Tape(n_steps, n_assets) for _ in envs]
    for i in range(n_steps):
        decided = decide(observations, envs) if i % rebalance_every_days == 0 else None
        for j, (env, tape) in enumerate(zip(envs, tapes)):
            if decided is None:
                target = np.array(env.weights)
            else:
                target = _check_weights(name, decided[j], n_assets, env.market.dates[env.day])
            observations[j], terminated = tape.step(env, i, target)
    return [tape.result(name, env, terminated) for env, tape in zip(envs, tapes)]


def run_all(strategies: Iterable[Strategy], env: PortfolioEnv) -> dict[str, BacktestResult]:
    """Backtest every strategy on the same env; all results share the same return days."""
    results: dict[str, BacktestResult] = {}
    for strategy in strategies:
        log.debug("backtesting %s on %s (%d days)", strategy.name, env.config.split, env.n_steps)
        result = run_backtest(strategy, env)
        if results and not np.array_equal(result.dates, next(iter(results.values())).dates):
            raise RuntimeError(f"strategy '{strategy.name}' was backtested on different dates")
        results[strategy.name] = result
    return results


def metrics_table(results: Mapping[str, BacktestResult]) -> pd.DataFrame:
    """One row per strategy, one column per metric."""
    return pd.DataFrame({name: result.metrics() for name, result in results.items()}).T
