"""The oracles of a synthetic market: growth-optimal long-only portfolios under its true law.

Expected daily log growth of a portfolio rebalanced to weights ``w`` is ``g(w)`` of ``quant.growth``. With regimes, a
constant mix earns the stationary average ``sum_r pi_r g_r(w)``. The regime-aware oracle knows the regime at each
close and holds each regime's own optimum: ``sum_r pi_r max_w g_r(w)`` (before trading costs).
"""

from __future__ import annotations

import numpy as np

from envs.synthetic import MarketParams
from quant.growth import expected_log_growth, growth_optimal_weights
from quant.regimes import from_law
from quant.strategies import Baseline, FilteredGrowth, FixedMix, RegimeOracle


def constant_mix_growth(weights: np.ndarray, params: MarketParams) -> float:
    """Stationary expected daily log growth of a constant mix under the regime-switching law."""
    pi = params.stationary()
    return float(sum(pi[r] * expected_log_growth(weights, params.mu[r], params.cov[r]) for r in range(len(pi))))


def oracle_weights(params: MarketParams) -> np.ndarray:
    """Growth-optimal constant mix for the regime mixture (the unconditional oracle)."""
    pi = params.stationary()
    mu = pi @ params.mu
    # sum_r pi_r g_r(w) = w.(sum pi_r (mu_r + diag/2)) - w'(sum pi_r cov_r)w/2: the same problem with averaged inputs.
    cov = np.einsum("r,rij->ij", pi, params.cov)
    return growth_optimal_weights(mu, cov)


def oracle_report(params: MarketParams) -> dict:
    """Oracle weights and expected daily log growth: unconditional, per regime, regime-aware and equal weight."""
    pi = params.stationary()
    weights = oracle_weights(params)
    per_regime = {}
    for r, name in enumerate(params.regimes):
        w_r = growth_optimal_weights(params.mu[r], params.cov[r])
        per_regime[name] = {
            "weights": dict(zip(params.assets, np.round(w_r, 6).tolist())),
            "daily_log_growth": expected_log_growth(w_r, params.mu[r], params.cov[r]),
            "constant_mix_daily_log_growth": expected_log_growth(weights, params.mu[r], params.cov[r]),
            "stationary_probability": float(pi[r]),
        }
    equal = np.full(len(params.assets), 1.0 / len(params.assets))
    return {
        "constant_mix": {
            "weights": dict(zip(params.assets, np.round(weights, 6).tolist())),
            "daily_log_growth": constant_mix_growth(weights, params),
        },
        "regime_aware_daily_log_growth": float(
            sum(pi[r] * per_regime[n]["daily_log_growth"] for r, n in enumerate(params.regimes))
        ),
        "equal_weight_daily_log_growth": constant_mix_growth(equal, params),
        "per_regime": per_regime,
        "note": "daily log growth before trading costs; second-order (Merton) approximation",
    }


def make_oracles(params: MarketParams, regime_path: np.ndarray, rebalance_every_days: int = 21) -> list[Baseline]:
    """The three oracles of a synthetic market, from least to most informed.

    The true constant mix trades on the baselines' schedule (its optimum needs no timing); the filtered oracle and the
    regime-aware mix trade daily, since they follow regime changes: the first as the true law's filter sees them from
    past returns (the partial-information optimum, the project's yardstick), the second as they happen (it knows the
    regime path, which no investor does).
    """
    regime_weights = np.stack([growth_optimal_weights(params.mu[r], params.cov[r]) for r in range(len(params.regimes))])
    return [
        # The true growth-optimal constant mix: knows the law, not the path.
        FixedMix("oracle_constant_mix", rebalance_every_days, oracle_weights(params)),
        FilteredGrowth("oracle_filtered", 1, from_law(params.transition, params.mu, params.cov)),
        RegimeOracle("oracle_regime_aware", 1, regime_weights, regime_path),
    ]
