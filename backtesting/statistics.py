"""Uncertainty for headline figures: block-bootstrap intervals, probabilistic and deflated Sharpe ratios, paired
comparisons. Pure functions of daily return series (``(N,)``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import stats

from backtesting import metrics
from core.constants import TRADING_DAYS_PER_YEAR as A

EULER_GAMMA = 0.5772156649015329


def block_length(returns: np.ndarray) -> float:
    """Expected block length (days) of the stationary bootstrap, by Politis & White (2004) as corrected by Patton,
    Politis & White (2009) (``arch.bootstrap.optimal_block_length``); at least 1."""
    from arch.bootstrap import optimal_block_length

    return max(1.0, float(optimal_block_length(np.asarray(returns, dtype=float))["stationary"].iloc[0]))


def bootstrap_ci(
    returns: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    level: float = 0.95,
    n_resamples: int = 1000,
    block_days: float | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of ``statistic`` under the stationary block bootstrap (Politis & Romano 1994), which keeps
    the serial dependence of daily returns that an i.i.d. bootstrap would destroy."""
    from arch.bootstrap import StationaryBootstrap

    returns = np.asarray(returns, dtype=float)
    block = block_days if block_days is not None else block_length(returns)
    bootstrap = StationaryBootstrap(block, returns, seed=np.random.default_rng(seed))
    draws = np.array([statistic(data[0][0]) for data in bootstrap.bootstrap(n_resamples)])
    draws = draws[np.isfinite(draws)]
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1.0 - alpha))


def sharpe_ci(returns: np.ndarray, **kwargs) -> tuple[float, float]:
    """Block-bootstrap interval of the annualised Sharpe ratio (risk-free 0)."""
    return bootstrap_ci(returns, metrics.sharpe_ratio, **kwargs)


def annual_return_ci(returns: np.ndarray, **kwargs) -> tuple[float, float]:
    """Block-bootstrap interval of the annualised geometric return."""
    return bootstrap_ci(returns, metrics.annualized_return, **kwargs)


def probabilistic_sharpe_ratio(returns: np.ndarray, benchmark_sharpe: float = 0.0) -> float:
    """P(true Sharpe > benchmark) given the sample's length, skewness and kurtosis (Bailey & López de Prado 2012).

    ``PSR = Phi((SR - SR*) sqrt(N - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))`` with per-day (not annualised)
    Sharpe ratios ``SR`` and ``SR*``, skewness ``g3`` and (non-excess) kurtosis ``g4``. ``benchmark_sharpe`` is
    annualised, like the rest of the project's Sharpe ratios.
    """
    r = np.asarray(returns, dtype=float)
    sd = r.std(ddof=1)
    if sd == 0:
        return float("nan")
    sr = r.mean() / sd
    sr_star = benchmark_sharpe / math.sqrt(A)
    g3 = float(stats.skew(r))
    g4 = float(stats.kurtosis(r, fisher=False))
    denominator = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr
    return float(stats.norm.cdf((sr - sr_star) * math.sqrt(r.size - 1) / math.sqrt(max(denominator, 1e-12))))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected largest of ``n_trials`` annualised Sharpe ratios of skill-less strategies whose estimates have variance
    ``sharpe_variance`` (annualised units), from extreme-value theory (Bailey & López de Prado 2014, eq. 6)."""
    if n_trials <= 1:
        return 0.0
    z1 = stats.norm.ppf(1.0 - 1.0 / n_trials)
    z2 = stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(sharpe_variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def deflated_sharpe_ratio(returns: np.ndarray, n_trials: int, sharpe_variance: float | None = None) -> float:
    """PSR against the Sharpe ratio the best of ``n_trials`` skill-less trials would show (Bailey & López de Prado
    2014). ``sharpe_variance``: variance of the trials' annualised Sharpe ratios; default the variance of one
    Sharpe estimate of this length under no skill, ``A / (N - 1)``."""
    r = np.asarray(returns, dtype=float)
    variance = sharpe_variance if sharpe_variance is not None else A / (r.size - 1)
    return probabilistic_sharpe_ratio(r, expected_max_sharpe(n_trials, variance))


def paired_comparison(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Paired test on daily return differences ``a - b`` over the same days.

    The t statistic uses a Newey-West (1987) standard error with ``floor(4 (N/100)^(2/9))`` lags, so serial
    correlation in the differences does not overstate significance.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = d.size
    lags = int(4 * (n / 100.0) ** (2.0 / 9.0))
    centred = d - d.mean()
    long_run = centred @ centred / n
    for lag in range(1, lags + 1):
        weight = 1.0 - lag / (lags + 1.0)
        long_run += 2.0 * weight * (centred[lag:] @ centred[:-lag]) / n
    se = math.sqrt(max(long_run, 0.0) / n)
    t = d.mean() / se if se > 0 else float("nan")
    p = float(2.0 * stats.t.sf(abs(t), df=n - 1)) if math.isfinite(t) else float("nan")
    return {
        "mean_daily_difference": float(d.mean()),
        "annualised_difference": float(d.mean() * A),
        "t_statistic": float(t),
        "p_value": p,
        "lags": lags,
    }
