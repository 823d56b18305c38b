"""envs.synthetic beyond four assets: a factor market over the archetypes whose covariances stay well conditioned at
200 assets and whose growth-optimal portfolio moves with the regime; the 4-asset built-in market as it always was."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from envs.config import DataConfig
from envs.synthetic import MAX_ASSETS, default_market, default_params, simulate
from quant.growth import growth_optimal_weights


@pytest.fixture(scope="module")
def wide():
    return default_params(n_assets=200, seed=7)


def test_the_builtin_four_asset_law_and_market_are_unchanged():
    """Pinned before the factor market existed: existing tests and recorded benchmarks rest on these numbers."""
    params = default_params()
    digest = hashlib.sha256()
    for values in (params.transition, params.mu, params.cov):
        digest.update(np.ascontiguousarray(values).tobytes())
    market, _, regimes = default_market(seed=7, years=25)

    assert digest.hexdigest() == "46ca37dfa8c90ca1e9c832ef48edca3eea1bf278be573965b8e53650bb1ae84c"
    np.testing.assert_allclose(
        market.closes[-1], [1026.7632391080801, 63.702640788140144, 154.1239359846445, 23.222629577984563], rtol=1e-9
    )
    np.testing.assert_array_equal(np.bincount(regimes), [3655, 1025, 1621])


def test_200_assets_have_distinct_names_in_four_sectors(wide):
    assert len(set(wide.assets)) == 200
    assert wide.assets[:5] == ("STOCK", "BOND", "GOLD", "CRYPTO", "STOCK2") and wide.assets[-1] == "CRYPTO50"
    assert wide.mu.shape == (3, 200) and wide.cov.shape == (3, 200, 200)


def test_200_asset_covariances_are_well_conditioned(wide):
    for cov in wide.cov:
        np.testing.assert_array_equal(cov, cov.T)
        sd = np.sqrt(np.diag(cov))
        assert np.linalg.cond(cov / np.outer(sd, sd)) < 2e3  # measured 620 to 710
        assert np.linalg.cond(cov) < 1e6  # measured 3e4 to 8e4: bond-like and crypto-like scales differ
        assert np.linalg.eigvalsh(cov).min() > 1e-6  # own noise of at least 0.4 times a 5%-a-year sector's


def test_assets_are_more_correlated_within_their_sector_than_across(wide):
    sector = np.arange(200) % 4
    same = (sector[:, None] == sector[None, :]) & ~np.eye(200, dtype=bool)
    for cov in wide.cov:
        sd = np.sqrt(np.diag(cov))
        correlation = cov / np.outer(sd, sd)
        assert correlation[same].mean() > 0.5 > np.abs(correlation[~same & ~np.eye(200, dtype=bool)]).mean()


def test_the_growth_optimal_portfolio_moves_with_the_regime_and_is_not_equal_weight(wide):
    weights = [growth_optimal_weights(mu, cov) for mu, cov in zip(wide.mu, wide.cov)]

    for w in weights:
        assert np.abs(w - 1.0 / 200).sum() > 1.0
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(weights[i] - weights[j]).sum() > 1.0  # half the portfolio or more changes hands


def test_the_factor_law_is_deterministic_per_seed():
    np.testing.assert_array_equal(default_params(n_assets=50, seed=3).cov, default_params(n_assets=50, seed=3).cov)
    assert not np.array_equal(default_params(n_assets=50, seed=3).mu, default_params(n_assets=50, seed=4).mu)


def test_simulated_factor_returns_have_the_laws_correlations():
    params = default_params(n_assets=200, n_regimes=1, seed=2)
    market, _ = simulate(params, n_days=10_001, seed=5)

    sd = np.sqrt(np.diag(params.cov[0]))
    np.testing.assert_allclose(
        np.corrcoef(market.log_returns(), rowvar=False), params.cov[0] / np.outer(sd, sd), atol=0.06
    )  # standard error about 0.01 on each of 19,900 pairs


def test_up_to_200_assets_are_supported_and_more_are_errors():
    assert DataConfig(synthetic_assets=MAX_ASSETS).synthetic_assets == 200
    with pytest.raises(ValidationError, match="synthetic_assets"):
        DataConfig(synthetic_assets=201)
    with pytest.raises(ConfigError, match="assets: 201 is not supported"):
        default_params(n_assets=201)
