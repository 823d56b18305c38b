"""``regime_growth``'s trading rate, chosen on validation.

Partial adjustment (``FilteredGrowth.trade_rate``) trades a fraction of the way from the weights held to the filtered
optimum each day. Which fraction pays best depends on the costs and on how jittery the filter is on the data, so it
is chosen on validation, like any other selection: the rate with the highest mean daily log growth net of the env's
costs, on the data's validation split or, for a synthetic market whose agents validate on its law, averaged over
fresh law paths of the validation's length (on the built-in market, its one validation split of 936 days chose the
slowest rate, 1.3 bp/day below the best over 40 law paths). The filtered targets do not depend on the rate, so they are computed
once and every rate is replayed through the env's own accounting (``envs.accounting``): the same numbers a backtest
of each rate gives (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from backtesting.backtest import evaluation_env, path_env
from envs.accounting import rebalance_batch
from envs.config import EnvConfig
from envs.market import MarketData
from envs.portfolio_env import PortfolioEnv
from quant.regimes import RegimeModel
from quant.registry import Baseline, BaselinesConfig, make_baseline

RATES = (1.0, 0.5, 0.25, 0.1, 0.05, 0.02)


def replay_rates(targets: np.ndarray, relatives: np.ndarray, cost_rate: float, rates=RATES) -> np.ndarray:
    """``(R, S)`` daily net log growth of trading each rate of the way from the weights held to ``targets``
    (``(S, K)``, one per decision day), starting from equal weights, under ``relatives`` (``(S, K)``)."""
    rates = np.asarray(rates, dtype=np.float64)[:, None]
    n_steps, n_assets = targets.shape
    held = np.full((len(rates), n_assets), 1.0 / n_assets)
    growth = np.empty((len(rates), n_steps))
    for day in range(n_steps):
        target = held + rates * (targets[day] - held)
        growth[:, day], _, _ = rebalance_batch(held, target, relatives[day][None, :], cost_rate)
    return growth


def replay_env(env: PortfolioEnv, strategy: Baseline, cost_rate: float, days: int, rates=RATES) -> np.ndarray:
    """``(R, days)``: ``replay_rates`` over the last ``days`` steps of ``env``, the targets of ``strategy``
    (``FilteredGrowth`` at rate 1) computed once from the env's closes."""
    offset = env.n_steps - days
    if offset < 0:
        raise ValueError(f"tuning: the env has {env.n_steps} steps, fewer than the {days} to replay")
    first = env.first_decision + offset
    targets = strategy.targets_path(env.market.closes[: first + days], first)
    return replay_rates(targets, env.split_arrays[1][offset:], cost_rate, rates)


def tune_regime_trade_rate(
    env_config: EnvConfig,
    market: MarketData | None,
    regimes: RegimeModel,
    split: str = "validation",
    rates=RATES,
    paths: Sequence[MarketData] | None = None,
) -> tuple[float, dict[float, float]]:
    """The rate with the highest mean daily net log growth of ``regime_growth`` on ``split``, and every rate's.

    :param env_config: the data, splits, costs and regime window (any residual base is ignored).
    :param regimes: the model fitted on the train split.
    :param paths: fresh paths (e.g. of a synthetic market's law) to average over instead of the split: each is
        played over its last ``split``-length days, and needs the regime window of history before them.
    """
    config = env_config.model_copy(update={"policy": env_config.policy.model_copy(update={"base": "none"})})
    env = evaluation_env(config, split, market=market)
    strategy = make_baseline(
        "regime_growth", env.assets, regimes=regimes, regime_window_days=config.regimes.window_days
    )
    cost_rate = config.cost_bps / 10_000.0
    if paths:
        per_path = [replay_env(path_env(config, p), strategy, cost_rate, env.n_steps, rates) for p in paths]
        means = np.mean([growth.mean(axis=1) for growth in per_path], axis=0)
    else:
        means = replay_env(env, strategy, cost_rate, env.n_steps, rates).mean(axis=1)
    scores = {float(rate): float(mean) for rate, mean in zip(rates, means)}
    return max(scores, key=scores.get), scores


def with_tuned_regime_rate(
    config: BaselinesConfig, env_config: EnvConfig, market: MarketData | None, regimes: RegimeModel | None
) -> BaselinesConfig:
    """``config`` with ``regime_trade_rate`` chosen on validation when it is ``None`` (and a regime model exists)."""
    if config.regime_trade_rate is not None or regimes is None or "regime_growth" not in config.include:
        return config
    rate, _ = tune_regime_trade_rate(env_config, market, regimes)
    return config.model_copy(update={"regime_trade_rate": rate})
