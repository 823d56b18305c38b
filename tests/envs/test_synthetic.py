"""envs.synthetic: a reproducible regime-switching market whose true law (and timing) is what its docstring says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import ConfigError
from envs.data import main as data_main
from envs.market import load_csv
from envs.oracle import oracle_weights
from envs.synthetic import MarketParams, default_market, default_params, load_params, params_path, simulate


def test_same_seed_gives_the_same_market(tiny):
    market, params, regimes = default_market(seed=7, years=4)

    np.testing.assert_array_equal(market.closes, tiny.market.closes)
    np.testing.assert_array_equal(market.dates, tiny.market.dates)
    np.testing.assert_array_equal(regimes, tiny.regimes)
    np.testing.assert_array_equal(params.cov, tiny.params.cov)


def test_different_seeds_give_different_markets(tiny):
    market, _, regimes = default_market(seed=8, years=4)

    assert not np.allclose(market.closes[1:], tiny.market.closes[1:])
    assert market.fingerprint() != tiny.market.fingerprint()


def test_simulated_market_has_business_days_positive_prices_and_the_default_assets(tiny):
    market = tiny.market

    assert market.assets == ("STOCK", "BOND", "GOLD", "CRYPTO")
    assert market.n_days == 4 * 252 + 1
    assert (np.diff(market.dates.astype(np.int64)) > 0).all()
    assert np.is_busday(market.dates).all()
    assert (market.closes > 0).all()
    np.testing.assert_array_equal(market.closes[0], 100.0)
    assert set(np.unique(tiny.regimes)) <= {0, 1, 2}


def test_regime_at_close_t_draws_the_return_from_t_to_t_plus_1():
    # Near-zero noise and regimes that switch every other day: each log return must equal its regime's mean.
    mu = np.array([[0.01, -0.02], [-0.03, 0.04]])
    params = MarketParams(
        assets=("A", "B"),
        regimes=("up", "down"),
        transition=np.full((2, 2), 0.5),
        mu=mu,
        cov=np.stack([np.eye(2) * 1e-14] * 2),
    )
    market, regimes = simulate(params, n_days=200, seed=3)

    assert 0 < regimes.mean() < 1 and (np.diff(regimes) != 0).sum() > 50
    np.testing.assert_allclose(market.log_returns(), mu[regimes[:-1]], atol=1e-5)


def test_simulated_returns_have_the_law_of_their_parameters():
    params = default_params(n_regimes=1)
    market, _ = simulate(params, n_days=40 * 252 + 1, seed=11)
    log_returns = market.log_returns()
    n_days = log_returns.shape[0]

    daily_sd = np.sqrt(np.diag(params.cov[0]))
    z_scores = (log_returns.mean(axis=0) - params.mu[0]) / (daily_sd / np.sqrt(n_days))
    assert np.abs(z_scores).max() < 4.0
    sample_cov = np.cov(log_returns, rowvar=False)
    np.testing.assert_allclose(np.diag(sample_cov), daily_sd**2, rtol=0.06)  # standard error of a variance ~1.4%
    true_corr = params.cov[0] / np.outer(daily_sd, daily_sd)
    np.testing.assert_allclose(np.corrcoef(log_returns, rowvar=False), true_corr, atol=0.05)  # standard error ~0.01


def test_default_law_is_a_valid_markov_chain_with_positive_definite_covariances():
    params = default_params()
    pi = params.stationary()

    np.testing.assert_allclose(params.transition.sum(axis=1), 1.0)
    assert (params.transition >= 0).all()
    np.testing.assert_allclose(pi @ params.transition, pi, atol=1e-12)
    assert pi.sum() == pytest.approx(1.0) and (pi > 0).all()
    for cov in params.cov:
        np.testing.assert_allclose(cov, cov.T)
        assert np.linalg.eigvalsh(cov).min() > 0


def test_more_assets_than_archetypes_get_distinct_names_and_stay_positive_definite():
    params = default_params(n_assets=9, seed=5)

    assert params.assets == ("STOCK", "BOND", "GOLD", "CRYPTO", "STOCK2", "BOND2", "GOLD2", "CRYPTO2", "STOCK3")
    assert all(np.linalg.eigvalsh(cov).min() > 0 for cov in params.cov)
    np.testing.assert_array_equal(default_params(n_assets=9, seed=5).mu, params.mu)
    assert not np.array_equal(default_params(n_assets=9, seed=6).mu, params.mu)


@pytest.mark.parametrize(("kwargs", "message"), [({"n_regimes": 4}, "regimes: 4"), ({"n_assets": 0}, "assets: 0")])
def test_unsupported_sizes_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        default_params(**kwargs)


def test_simulating_fewer_than_two_days_is_a_config_error():
    with pytest.raises(ConfigError, match="n_days: 1 must be at least 2"):
        simulate(default_params(), n_days=1, seed=0)


def test_synth_command_writes_a_csv_and_params_that_round_trip(tmp_path, capsys):
    out = tmp_path / "synth" / "market.csv"

    assert (
        data_main(["synth", "--out", str(out), "--seed", "3", "--years", "3", "--assets", "5", "--regimes", "2"]) == 0
    )

    market, params, regimes = default_market(seed=3, years=3, n_assets=5, n_regimes=2)
    loaded_params, loaded_regimes = load_params(out)
    assert loaded_params.assets == params.assets and loaded_params.regimes == params.regimes
    np.testing.assert_allclose(loaded_params.transition, params.transition, rtol=1e-15)
    np.testing.assert_allclose(loaded_params.mu, params.mu, rtol=1e-15)
    np.testing.assert_allclose(loaded_params.cov, params.cov, rtol=1e-15)
    np.testing.assert_array_equal(loaded_regimes, regimes)
    np.testing.assert_allclose(load_csv(out).closes, market.closes, rtol=1e-7)

    record = json.loads(params_path(out).read_text())
    assert record["seed"] == 3
    np.testing.assert_allclose(
        list(record["oracle"]["constant_mix"]["weights"].values()), oracle_weights(params), atol=1e-6
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 3 * 252 + 1 and summary["assets"] == list(params.assets)


def test_csv_without_params_file_has_no_known_law(write_csv):
    assert load_params(write_csv()) is None
