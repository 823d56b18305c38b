"""envs.oracle: growth-optimal long-only weights, the growth formula and the regime-aware bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from envs.oracle import constant_mix_growth, oracle_report, oracle_weights
from envs.synthetic import default_params
from quant.growth import expected_log_growth, growth_optimal_weights
from tests.support.optimality import assert_growth_optimal, stationary_distribution

DEFAULT = default_params()


def random_moments(seed: int, n_assets: int) -> tuple[np.ndarray, np.ndarray]:
    """Daily-scale mean log returns and a random positive-definite covariance."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n_assets, n_assets)) * rng.uniform(0.005, 0.03, size=n_assets)[:, None]
    cov = factors @ factors.T + 1e-6 * np.eye(n_assets)
    mu = rng.normal(0.0, 0.001, size=n_assets)
    return mu, cov


def assert_on_simplex(weights: np.ndarray) -> None:
    assert (weights >= 0).all()
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)


@given(seed=st.integers(0, 2**32 - 1), n_assets=st.integers(1, 6))
def test_growth_optimal_weights_lie_on_the_simplex_and_beat_random_mixes(seed, n_assets):
    mu, cov = random_moments(seed, n_assets)
    weights = growth_optimal_weights(mu, cov)

    assert_on_simplex(weights)
    rivals = np.random.default_rng(seed + 1).dirichlet(np.ones(n_assets), size=200)
    rivals = np.vstack([rivals, np.eye(n_assets), np.full(n_assets, 1.0 / n_assets)])
    best = expected_log_growth(weights, mu, cov)
    assert all(best >= expected_log_growth(w, mu, cov) - 1e-12 for w in rivals)


def test_two_uncorrelated_assets_match_the_closed_form_optimum():
    # g(w) = w a1 + (1-w) a2 - (w^2 s1 + (1-w)^2 s2)/2 with a = mu + s/2  =>  w* = (a1 - a2 + s2) / (s1 + s2).
    mu = np.array([0.0003, 0.0002])
    variances = np.array([0.0004, 0.0001])
    drift = mu + variances / 2
    expected = (drift[0] - drift[1] + variances[1]) / variances.sum()

    weights = growth_optimal_weights(mu, np.diag(variances))

    assert expected == pytest.approx(0.7)  # an interior optimum
    assert weights[0] == pytest.approx(expected, abs=1e-6)


def test_dominated_asset_gets_no_weight():
    # Same volatility, perfectly correlated, lower drift: the optimum holds only the better asset.
    cov = np.full((2, 2), 1e-4)
    weights = growth_optimal_weights(np.array([0.0005, 0.0002]), cov + np.diag([1e-12, 1e-12]))

    np.testing.assert_allclose(weights, [1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("regime", range(3))
def test_growth_formula_matches_monte_carlo_for_daily_parameters(regime):
    """``g(w)`` is a second-order approximation; with daily moments the neglected terms are ~1e-6 per day."""
    mu, cov = DEFAULT.mu[regime], DEFAULT.cov[regime]
    rng = np.random.default_rng(regime)
    draws = rng.multivariate_normal(mu, cov, size=200_000)
    antithetic = 2.0 * mu - draws  # same law, negatively correlated draws: a far smaller Monte Carlo error
    for weights in (np.full(4, 0.25), growth_optimal_weights(mu, cov), np.array([0.5, 0.3, 0.2, 0.0])):
        monte_carlo = 0.5 * (np.log(np.exp(draws) @ weights) + np.log(np.exp(antithetic) @ weights)).mean()
        assert expected_log_growth(weights, mu, cov) == pytest.approx(monte_carlo, abs=5e-6)


def test_oracle_weights_lie_on_the_simplex_and_beat_equal_weight():
    weights = oracle_weights(DEFAULT)
    equal = np.full(4, 0.25)

    assert_on_simplex(weights)
    assert constant_mix_growth(weights, DEFAULT) > constant_mix_growth(equal, DEFAULT)
    # The default law is built so that the best constant mix is a genuine mix, neither one asset nor equal weight.
    assert (weights > 0.05).sum() >= 2
    assert np.abs(weights - equal).sum() > 0.2


@given(seed=st.integers(0, 2**32 - 1))
def test_oracle_constant_mix_beats_any_other_constant_mix(seed):
    best = constant_mix_growth(oracle_weights(DEFAULT), DEFAULT)
    rivals = np.random.default_rng(seed).dirichlet(np.full(4, 0.5), size=100)

    assert all(best >= constant_mix_growth(w, DEFAULT) - 1e-12 for w in rivals)


def test_constant_mix_growth_is_the_stationary_average_of_regime_growth():
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    pi = DEFAULT.stationary()
    per_regime = [expected_log_growth(weights, DEFAULT.mu[r], DEFAULT.cov[r]) for r in range(3)]

    assert constant_mix_growth(weights, DEFAULT) == pytest.approx(float(pi @ per_regime), rel=1e-12)


@pytest.mark.parametrize("n_regimes", [1, 2, 3])
def test_regime_aware_oracle_grows_at_least_as_fast_as_the_constant_mix(n_regimes):
    report = oracle_report(default_params(n_regimes=n_regimes))

    regime_aware = report["regime_aware_daily_log_growth"]
    constant = report["constant_mix"]["daily_log_growth"]
    assert regime_aware >= constant - 1e-12
    assert constant >= report["equal_weight_daily_log_growth"]
    if n_regimes == 1:
        assert regime_aware == pytest.approx(constant, abs=1e-10)
    else:
        assert regime_aware > constant


def test_the_oracle_report_holds_the_optimal_mixes_and_their_growth():
    """Checked from the law's parameters alone: the stationary distribution by numpy's eigenvectors, each mix by
    the optimality conditions, each growth by the second-order formula written out here."""
    report = oracle_report(DEFAULT)
    pi = stationary_distribution(DEFAULT.transition)

    def growth(w, mu, cov):
        return float(w @ mu + w @ np.diag(cov) / 2 - w @ cov @ w / 2)

    constant = np.array(list(report["constant_mix"]["weights"].values()))
    assert_growth_optimal(constant, pi @ DEFAULT.mu, np.einsum("r,rij->ij", pi, DEFAULT.cov), tolerance=1e-5)
    expected = sum(pi[r] * growth(constant, DEFAULT.mu[r], DEFAULT.cov[r]) for r in range(3))
    assert report["constant_mix"]["daily_log_growth"] == pytest.approx(expected, rel=1e-4)
    assert set(report["per_regime"]) == {"calm", "crisis", "inflation"}
    for r, name in enumerate(("calm", "crisis", "inflation")):
        regime = report["per_regime"][name]
        w = np.array(list(regime["weights"].values()))
        assert_growth_optimal(w, DEFAULT.mu[r], DEFAULT.cov[r], tolerance=1e-5)
        assert regime["daily_log_growth"] == pytest.approx(growth(w, DEFAULT.mu[r], DEFAULT.cov[r]), rel=1e-4)
        assert regime["stationary_probability"] == pytest.approx(pi[r])
