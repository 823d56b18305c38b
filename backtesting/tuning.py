"""``regime_growth``'s trading rate, chosen on validation.

Partial adjustment (``FilteredGrowth.trade_rate``) trades a fraction of the way from the weights held to the filtered
optimum each day. Which fraction pays best depends on the costs and on how jittery the filter is on the data, so it
is chosen on the validation split, like any other selection: the rate with the highest mean daily log growth net of
the env's costs. The filtered targets do not depend on the rate, so they are computed once and every rate is replayed
through the env's own accounting (``envs.accounting``): the same numbers a backtest of each rate gives (tested).
"""

from __future__ import annotations

import numpy as np

from backtesting.backtest import evaluation_env
from envs.accounting import rebalance_batch
from envs.config import EnvConfig
from envs.market import MarketData
from quant.regimes import RegimeModel
from quant.registry import BaselinesConfig, make_baseline

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


def tune_regime_trade_rate(
    env_config: EnvConfig,
    market: MarketData | None,
    regimes: RegimeModel,
    split: str = "validation",
    rates=RATES,
) -> tuple[float, dict[float, float]]:
    """The rate with the highest mean daily net log growth of ``regime_growth`` on ``split``, and every rate's.

    :param env_config: the data, splits, costs and regime window (any residual base is ignored).
    :param regimes: the model fitted on the train split.
    """
    config = env_config.model_copy(update={"policy": env_config.policy.model_copy(update={"base": "none"})})
    env = evaluation_env(config, split, market=market)
    strategy = make_baseline(
        "regime_growth", env.assets, regimes=regimes, regime_window_days=config.regimes.window_days
    )
    first = env.first_decision
    targets = strategy.targets_path(env.market.closes[: first + env.n_steps], first)
    relatives = env.split_arrays[1]
    means = replay_rates(targets, relatives, config.cost_bps / 10_000.0, rates).mean(axis=1)
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
