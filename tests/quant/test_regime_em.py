"""quant.regime_em: each covariance structure's parameter count and data needs, fits that carry full covariances
whatever the structure, and a choice by BIC that keeps the 4-asset market's full covariance and finds the factor
market's regimes at 200 assets."""

from __future__ import annotations

import numpy as np
import pytest
from hmmlearn.hmm import GaussianHMM

from core.errors import ConfigError
from envs.synthetic import default_market
from quant.regime_em import SCALE, count_factors, n_parameters, select_regimes, shortfall
from quant.regimes import fit_regimes

TRAIN = 0.7  # the default train split's share of the days


def train_returns(n_assets: int, years: float, seed: int = 7) -> np.ndarray:
    market, _, _ = default_market(seed=seed, years=years, n_assets=n_assets)
    return market.log_returns()[: int(TRAIN * market.n_days)]


@pytest.fixture(scope="module")
def wide() -> np.ndarray:
    """The train split of 25 years of the 200-asset factor market (4,410 days)."""
    return train_returns(200, 25)


@pytest.mark.parametrize("covariance", ["full", "tied", "diag"])
@pytest.mark.parametrize(("n_regimes", "n_assets"), [(1, 4), (3, 4), (2, 20), (4, 200)])
def test_parameter_counts_are_hmmlearns_for_its_structures(covariance, n_regimes, n_assets):
    hmm = GaussianHMM(n_components=n_regimes, covariance_type=covariance)
    hmm.n_features = n_assets

    assert n_parameters(n_regimes, n_assets, covariance) == sum(hmm._get_n_fit_scalars_per_param().values())


def test_a_factor_structure_counts_its_loadings_up_to_rotation():
    # 3 regimes, 10 assets, 2 factors: 2 start + 6 transition + 30 means, then loadings 10*2 - 2^2 = 16, factor
    # covariances 3 * 3 = 9 and residual variances 3 * 10 = 30.
    assert n_parameters(3, 10, "factor", n_factors=2) == 38 + 16 + 9 + 30


def test_a_full_covariance_is_a_candidate_only_where_the_assets_are_few_for_the_days():
    days = 4410
    assert all(shortfall("full", k, 4, days) is None for k in range(1, 9))
    assert shortfall("full", 3, 20, days) is None
    assert "more parameters than days" in shortfall("full", 1, 200, days)
    assert "more parameters than days" in shortfall("tied", 1, 200, days)
    assert shortfall("diag", 4, 200, days) is None and shortfall("factor", 4, 200, days, n_factors=4) is None
    assert "need 40 days in each regime, 320 for 8 regimes" in shortfall("full", 8, 4, 300)


def test_the_factor_count_is_the_sectors_of_the_factor_market(wide):
    assert count_factors(wide * SCALE) == 4  # the four archetypes the assets load on
    noise = np.random.default_rng(0).normal(size=(4410, 50))
    assert count_factors(noise) == 0


def test_auto_keeps_the_full_covariance_on_the_builtin_market():
    returns = train_returns(4, 25)

    chosen = select_regimes(returns, max_regimes=3, restarts=2)
    full = fit_regimes(returns, max_regimes=3, restarts=2)

    assert (chosen.covariance, chosen.n_regimes) == ("full", 3)
    assert {structure for structure, _ in chosen.candidates} == {"full", "tied", "diag", "factor"}
    assert chosen.bic == min(chosen.candidates.values())
    np.testing.assert_array_equal(chosen.model.covariances, full.covariances)
    np.testing.assert_array_equal(chosen.model.transition, full.transition)


def test_at_200_assets_auto_finds_the_factor_markets_three_regimes_with_well_conditioned_covariances(wide):
    fitted = select_regimes(wide, max_regimes=3, restarts=1)

    assert {structure for structure, _ in fitted.candidates} == {"diag", "factor"}  # full and tied: too few days
    assert (fitted.covariance, fitted.n_regimes, fitted.n_factors) == ("factor", 3, 4)
    assert fitted.bic < min(bic for (structure, _), bic in fitted.candidates.items() if structure == "diag")
    covariances = fitted.model.covariances
    assert covariances.shape == (3, 200, 200)
    np.testing.assert_allclose(covariances, covariances.transpose(0, 2, 1))
    assert np.linalg.eigvalsh(covariances).min() > 0
    assert max(np.linalg.cond(c) for c in covariances) < 1e6


def test_diag_and_tied_fits_are_carried_as_full_matrices():
    returns = train_returns(20, 10)

    diagonal = select_regimes(returns, 2, covariance="diag", restarts=1).model
    tied = select_regimes(returns, 2, covariance="tied", restarts=1, iterations=2000).model

    assert diagonal.covariances.shape == tied.covariances.shape == (2, 20, 20)
    off_diagonal = ~np.eye(20, dtype=bool)
    assert (diagonal.covariances[:, off_diagonal] == 0).all() and (diagonal.covariances[:, ~off_diagonal] > 0).all()
    np.testing.assert_array_equal(tied.covariances[0], tied.covariances[1])
    assert np.abs(tied.covariances[0][off_diagonal]).max() > 0


def test_an_unknown_covariance_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError, match=r"env_config\.regimes\.covariance: 'sparse' is not one of auto, full"):
        select_regimes(np.zeros((100, 2)), covariance="sparse", where="env_config.regimes")


def test_too_many_regimes_under_every_structure_names_each():
    returns = train_returns(4, 2)[:60]

    with pytest.raises(ConfigError, match=r"8 regimes over 4 assets are too many for 60 days.*full: 175 parameters"):
        select_regimes(returns, 8)
