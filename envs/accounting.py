"""Portfolio accounting: the one place trading costs are charged and wealth moves (env and backtests use it).

At the close of day ``t`` the portfolio holds drifted weights ``w_cur`` and rebalances to ``w_new``:

    turnover = sum_k |w_new_k - w_cur_k|          (one-way traded fraction of wealth, times 2)
    cost     = cost_rate * turnover               (fraction of wealth, cost_rate = cost_bps / 10,000)
    gross    = sum_k w_new_k * close[t+1, k] / close[t, k]
    wealth[t+1] = wealth[t] * (1 - cost) * gross
    log_growth  = log(1 - cost) + log(gross)
    w_cur(t+1)  = w_new * relatives / gross       (weights after the market moves)

The cost is charged on pre-trade wealth, the standard proportional-cost approximation.
"""

from __future__ import annotations

import math

import numpy as np


def rebalance(
    current: np.ndarray, target: np.ndarray, relatives: np.ndarray, cost_rate: float, scratch: np.ndarray
) -> tuple[float, float, float]:
    """Rebalance ``current`` to ``target``, earn one day, and overwrite ``current`` with the drifted weights.

    :param current: ``(K,)`` drifted weights before trading; updated in place.
    :param target: ``(K,)`` new weights (non-negative, sum 1).
    :param relatives: ``(K,)`` price relatives ``close[t+1] / close[t]``.
    :param cost_rate: cost per unit of turnover (``cost_bps / 1e4``).
    :param scratch: ``(K,)`` work buffer, so the step allocates no arrays.
    :returns: ``(log_growth, turnover, cost)``.
    """
    np.subtract(target, current, out=scratch)
    np.abs(scratch, out=scratch)
    turnover = float(scratch.sum())
    cost = cost_rate * turnover
    np.multiply(target, relatives, out=scratch)
    gross = float(scratch.sum())
    np.divide(scratch, gross, out=current)
    return math.log1p(-cost) + math.log(gross), turnover, cost


def rebalance_batch(
    current: np.ndarray, target: np.ndarray, relatives: np.ndarray, cost_rate: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rebalance`` for ``N`` portfolios at once: ``(N, K)`` arrays, ``current`` overwritten with the drifted
    weights; returns ``(N,)`` arrays ``(log_growth, turnover, cost)``."""
    turnover = np.abs(target - current).sum(axis=1)
    cost = cost_rate * turnover
    grown = target * relatives
    gross = grown.sum(axis=1)
    np.divide(grown, gross[:, None], out=current)
    return np.log1p(-cost) + np.log(gross), turnover, cost
