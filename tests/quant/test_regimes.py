"""envs.regimes and the filtered growth-optimal strategies: a causal filter, a fit that recovers a known law,
clear errors, and an oracle that uses the filter to beat the constant mix."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backtesting.backtest import path_env, run_batched_strategy
from core.errors import ConfigError
from envs.oracle import make_oracles
from envs.synthetic import default_params, simulate
from quant.growth import expected_log_growth, growth_optimal_batch, growth_optimal_weights, mixture_inputs
from quant.regimes import (
    RunningFilter,
    filter_probabilities,
    fit_regimes,
    forgetting_days,
    from_law,
    predicted_over_window,
    windowed_filter,
)
from quant.strategies import FilteredGrowth


@pytest.fixture(scope="module")
def law():
    params = default_params(seed=7)
    return params, from_law(params.transition, params.mu, params.cov)


@pytest.fixture(scope="module")
def returns(law):
    market, _ = simulate(law[0], n_days=3000, seed=5)
    return market.log_returns()


@given(t=st.integers(0, 400), seed=st.integers(0, 2**32 - 1))
def test_the_filter_at_t_ignores_returns_after_t(law, returns, t, seed):
    _, model = law
    changed = returns[:500].copy()
    changed[t + 1 :] += np.random.default_rng(seed).normal(0, 0.05, changed[t + 1 :].shape)
    np.testing.assert_array_equal(
        filter_probabilities(model, returns[:500])[: t + 1], filter_probabilities(model, changed)[: t + 1]
    )
    window = 40
    np.testing.assert_array_equal(
        windowed_filter(model, returns[:500], window)[: t + 1], windowed_filter(model, changed, window)[: t + 1]
    )


def test_the_windowed_filter_forgets_its_start_within_the_default_window(law, returns):
    """Measured on the built-in law: 65 days to within 0.001 of the whole-history filter (README: Regimes)."""
    from envs.config import RegimeConfig

    _, model = law
    days = forgetting_days(model, returns)
    assert 20 <= days <= RegimeConfig().window_days // 2
    full = filter_probabilities(model, returns)
    windowed = windowed_filter(model, returns, days)
    assert np.abs(windowed[500:] - full[500:]).max() <= 1e-3
    assert np.abs(windowed_filter(model, returns, 5)[500:] - full[500:]).max() > 1e-3  # a short window does not forget


@pytest.mark.parametrize(
    ("n_days", "window"), [(300, 40), (120, 40), (121, 40), (160, 40), (159, 40), (383, 130), (30, 1), (50, 7)]
)
def test_the_windowed_filter_is_the_filter_run_over_each_window_for_every_path(law, returns, n_days, window):
    """Whole blocks, a block and a day, exact multiples and one day short: each row is the filter from the
    stationary distribution over its own window, for each path of a batch as for that path alone."""
    _, model = law
    paths = np.stack([returns[k * 400 : k * 400 + n_days] for k in range(3)])
    batched = windowed_filter(model, paths, window)
    for p, path in enumerate(paths):
        assert np.isnan(batched[p, : window - 1]).all()
        expected = [filter_probabilities(model, path[j - window + 1 : j + 1])[-1] for j in range(window - 1, n_days)]
        np.testing.assert_allclose(batched[p, window - 1 :], expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(windowed_filter(model, path, window), batched[p], rtol=1e-12, atol=1e-15)


def test_the_running_filter_advances_day_by_day_to_the_whole_history_filter(law, returns):
    _, model = law
    market, _ = simulate(law[0], n_days=301, seed=9)
    running = RunningFilter(model)
    full = filter_probabilities(model, market.log_returns())
    for day in (1, 2, 50, 51, 300):  # a day, the next, a jump of several, and to the end
        np.testing.assert_allclose(running.update(market.closes[: day + 1]), full[day - 1], atol=1e-12)
    np.testing.assert_allclose(running.update(market.closes[:11]), full[9], atol=1e-12)  # a shorter history starts over


def test_em_recovers_a_known_two_regime_law_and_bic_picks_two():
    params = default_params(n_regimes=2, seed=3)
    market, _ = simulate(params, n_days=12_000, seed=1)
    model = fit_regimes(market.log_returns(), "bic", max_regimes=3, seed=0)
    assert model.n_regimes == 2
    order = np.argsort([np.trace(c) for c in params.cov])  # the fit orders regimes by total variance
    np.testing.assert_allclose(model.transition, params.transition[np.ix_(order, order)], atol=0.01)
    np.testing.assert_allclose(
        np.sqrt(np.diagonal(model.covariances, axis1=1, axis2=2)),
        np.sqrt(np.diagonal(params.cov[order], axis1=1, axis2=2)),
        rtol=0.05,
    )
    # Means within 4 standard errors of a regime's sample mean: sd / sqrt(days spent in it).
    days_in = 12_000 * params.stationary()[order]
    stderr = np.sqrt(np.diagonal(params.cov[order], axis1=1, axis2=2)) / np.sqrt(days_in)[:, None]
    assert (np.abs(model.means - params.mu[order]) <= 4 * stderr).all()
    again = fit_regimes(market.log_returns(), 2, seed=0)
    np.testing.assert_array_equal(again.transition, model.transition)  # deterministic given the seed


def test_too_many_regimes_for_the_sample_is_a_config_error(returns):
    with pytest.raises(
        ConfigError, match=r"regimes\.n_regimes: 8 regimes over 4 assets have 175 parameters, too many for 300 days"
    ):
        fit_regimes(returns[:300], 8)


def test_em_that_does_not_converge_says_what_to_raise(returns):
    with pytest.raises(ConfigError, match=r"did not converge in 2 iterations.*raise regimes\.iterations"):
        fit_regimes(returns, 3, iterations=2)


def test_the_filtered_strategy_is_the_growth_optimum_of_the_predicted_mixture(law, small_config):
    """Checked against a direct computation: the whole-history filter, then SLSQP on the mixture, day by day."""
    params, model = law
    market, _ = simulate(params, n_days=160, seed=21)
    env = path_env(small_config, market)
    strategy = FilteredGrowth("oracle_filtered", 1, model)
    result = run_batched_strategy(strategy, [env])[0]
    full = filter_probabilities(model, market.log_returns())
    first_decision = env.split.first - 1
    for i, day in enumerate(range(first_decision, first_decision + 5)):
        predicted = full[day - 1] @ model.transition
        mu, cov = mixture_inputs(predicted[None], model.means, model.covariances)
        np.testing.assert_allclose(result.weights[i], growth_optimal_weights(mu[0], cov[0]), atol=1e-6)


def test_the_batched_growth_optimum_is_exactly_the_slsqp_one():
    rng = np.random.default_rng(0)
    mu = rng.normal(3e-4, 1e-3, (50, 4))
    factors = rng.normal(0, 0.01, (50, 4, 4))
    cov = factors @ factors.transpose(0, 2, 1) + 1e-6 * np.eye(4)
    expected = np.stack([growth_optimal_weights(m, c) for m, c in zip(mu, cov)])
    np.testing.assert_allclose(growth_optimal_batch(mu, cov), expected, atol=1e-6)


@pytest.mark.parametrize("n_assets", [12, 40])
def test_the_batched_growth_optimum_at_many_assets_is_the_slsqp_one(n_assets):
    """Past 10 assets the batch searches faces (projected gradient, then active sets): it must find SLSQP's optimum,
    including with two identical assets and with a face that is the whole simplex (equal weights)."""
    rng = np.random.default_rng(n_assets)
    factors = rng.normal(0, 0.01, (12, n_assets, 3))
    cov = factors @ factors.transpose(0, 2, 1) + np.einsum(
        "na,ab->nab", rng.uniform(1e-5, 1e-4, (12, n_assets)), np.eye(n_assets)
    )
    mu = rng.normal(3e-4, 1e-3, (12, n_assets))
    cov[:, 1], cov[:, :, 1], mu[:, 1] = cov[:, 0], cov[:, :, 0], mu[:, 0]  # assets 0 and 1 identical
    mu[-1], cov[-1] = 1e-4, 1e-4 * np.eye(n_assets)  # the optimum is equal weight
    batch = growth_optimal_batch(mu, cov)
    for m, c, w in zip(mu, cov, batch):
        assert expected_log_growth(w, m, c) >= expected_log_growth(growth_optimal_weights(m, c), m, c) - 1e-12
    assert (batch >= 0).all() and np.allclose(batch.sum(axis=1), 1.0)
    np.testing.assert_allclose(batch[-1], 1.0 / n_assets, atol=1e-9)


def test_the_filtered_oracle_beats_the_constant_mix_on_held_out_paths(law, small_config):
    params, _ = law
    paths = [simulate(params, n_days=521, seed=40_000 + i) for i in range(12)]
    envs = [path_env(small_config, market) for market, _ in paths]
    constant, filtered, _ = make_oracles(params, paths[0][1], 21)
    growth = {
        s.name: np.array([r.log_growth.mean() for r in run_batched_strategy(s, envs)]) for s in (constant, filtered)
    }
    edge = growth["oracle_filtered"] - growth["oracle_constant_mix"]
    assert edge.mean() > 2 * edge.std(ddof=1) / np.sqrt(len(edge))


@given(lengths=st.lists(st.integers(2, 90), min_size=1, max_size=4), window=st.sampled_from([1, 13, 40]))
def test_predicted_over_a_window_is_the_windowed_filters_last_row_times_the_transition(law, returns, lengths, window):
    _, law = law
    closes = np.exp(np.cumsum(np.vstack([np.zeros((1, returns.shape[1])), returns[:100]]), axis=0))
    histories = [closes[: n + 1] for n in lengths]  # n returns each; fewer than the window: all of them
    predicted = predicted_over_window(law, histories, window)
    for history, row in zip(histories, predicted):
        log_returns = np.diff(np.log(history), axis=0)[-window:]
        expected = filter_probabilities(law, log_returns)[-1] @ law.transition
        np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-12)
        if len(history) > window:
            full = windowed_filter(law, np.diff(np.log(history), axis=0), window)[-1]
            np.testing.assert_allclose(row, full @ law.transition, rtol=1e-9, atol=1e-12)
