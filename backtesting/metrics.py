"""Performance measures: pure functions of a daily net simple-return series ``r`` (``(N,)``).

Annualisation uses ``A = 252`` trading days. Risk-free rates are daily decimals (``rf_annual / 252``), scalar or
``(N,)``. Every function documents its formula; conventions follow skfolio's measures where they overlap.
"""

from __future__ import annotations

import math

import numpy as np

from core.constants import TRADING_DAYS_PER_YEAR as A


def _as_returns(returns: np.ndarray) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or r.size < 2:
        raise ValueError(f"need a 1-D series of at least 2 daily returns, got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("returns contain NaN or infinity")
    return r


def annualized_return(returns: np.ndarray) -> float:
    """Geometric: ``prod(1 + r) ** (A / N) - 1``."""
    r = _as_returns(returns)
    return float(math.exp(np.log1p(r).sum() * A / r.size) - 1.0)


def annualized_volatility(returns: np.ndarray) -> float:
    """``std(r, ddof=1) * sqrt(A)``."""
    r = _as_returns(returns)
    return float(r.std(ddof=1) * math.sqrt(A))


def sharpe_ratio(returns: np.ndarray, rf_daily: float | np.ndarray = 0.0) -> float:
    """Annualised Sharpe ratio: ``mean(r - rf) / std(r - rf, ddof=1) * sqrt(A)`` (Sharpe 1994)."""
    excess = _as_returns(returns) - rf_daily
    sd = excess.std(ddof=1)
    return float(excess.mean() / sd * math.sqrt(A)) if sd > 0 else float("nan")


def sortino_ratio(returns: np.ndarray, rf_daily: float | np.ndarray = 0.0) -> float:
    """``mean(r - rf) / sqrt(mean(min(r - rf, 0)^2)) * sqrt(A)``: downside deviation below the risk-free rate."""
    excess = _as_returns(returns) - rf_daily
    downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2)))
    return float(excess.mean() / downside * math.sqrt(A)) if downside > 0 else float("nan")


def drawdowns(returns: np.ndarray) -> np.ndarray:
    """``(N,)`` drawdown after each day: ``1 - W_t / max_{s<=t} W_s`` with ``W_t = prod_{i<=t}(1 + r_i)``, ``W_0 = 1``."""
    wealth = np.cumprod(1.0 + _as_returns(returns))
    peaks = np.maximum.accumulate(np.concatenate([[1.0], wealth]))[1:]
    return 1.0 - wealth / peaks


def max_drawdown(returns: np.ndarray) -> float:
    """Largest peak-to-trough loss of wealth, as a positive fraction: ``max_t drawdown_t``."""
    return float(drawdowns(returns).max())


def calmar_ratio(returns: np.ndarray) -> float:
    """``annualized_return / max_drawdown`` (NaN without a drawdown)."""
    mdd = max_drawdown(returns)
    return annualized_return(returns) / mdd if mdd > 0 else float("nan")


def cvar(returns: np.ndarray, level: float = 0.95) -> float:
    """Conditional value at risk (expected shortfall) of one day, as a positive loss.

    ``-mean`` of the ``ceil((1 - level) * N)`` worst daily returns (Rockafellar & Uryasev 2000, empirical form).
    """
    r = np.sort(_as_returns(returns))
    tail = max(1, math.ceil((1.0 - level) * r.size - 1e-9))
    return float(-r[:tail].mean())


def annualized_turnover(turnover: np.ndarray) -> float:
    """``mean(turnover_t) * A`` with ``turnover_t = sum_k |w_new - w_held|`` (2 = the whole book sold and rebought)."""
    return float(np.mean(turnover) * A)


def total_cost(costs: np.ndarray) -> float:
    """Sum of daily costs as fractions of wealth: the cumulative return drag of trading."""
    return float(np.sum(costs))


def summary(
    returns: np.ndarray,
    turnover: np.ndarray | None = None,
    costs: np.ndarray | None = None,
    rf_daily: float | np.ndarray = 0.0,
) -> dict[str, float]:
    """The metrics table row of one strategy."""
    row = {
        "annual_return": annualized_return(returns),
        "annual_volatility": annualized_volatility(returns),
        "sharpe": sharpe_ratio(returns, rf_daily),
        "sortino": sortino_ratio(returns, rf_daily),
        "max_drawdown": max_drawdown(returns),
        "calmar": calmar_ratio(returns),
        "cvar_95": cvar(returns, 0.95),
        "mean_daily_log_growth": float(np.log1p(_as_returns(returns)).mean()),
    }
    if turnover is not None:
        row["annual_turnover"] = annualized_turnover(turnover)
    if costs is not None:
        row["total_cost"] = total_cost(costs)
    return row
