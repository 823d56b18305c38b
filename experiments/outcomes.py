"""What every agent scored on a request earned over its period, from the period's per-asset returns: the same
accounting as the env and the backtests (``envs.accounting``), costs charged on the turnover from the weights the
request said were held."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from envs.accounting import rebalance_batch


def net_log_growth(
    weights: Mapping[str, Sequence[float]], held: Sequence[float], asset_returns: Sequence[float], cost_rate: float
) -> dict[str, float]:
    """Each agent's net log growth: ``log(1 - cost_rate * |w - held|_1) + log(1 + w . r)``."""
    names = list(weights)
    if not names:
        return {}
    target = np.asarray([weights[n] for n in names], dtype=np.float64)
    current = np.broadcast_to(np.asarray(held, dtype=np.float64), target.shape).copy()
    growth, _, _ = rebalance_batch(current, target, 1.0 + np.asarray(asset_returns, dtype=np.float64), cost_rate)
    return {name: float(g) for name, g in zip(names, growth)}


def net_return(
    weights: Sequence[float], held: Sequence[float], asset_returns: Sequence[float], cost_rate: float
) -> float:
    """The net simple return of one allocation."""
    return math.expm1(net_log_growth({"": weights}, held, asset_returns, cost_rate)[""])
