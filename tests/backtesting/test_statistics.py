"""backtesting.statistics: bootstrap coverage, PSR/DSR behaviour, paired tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backtesting import metrics, statistics


def test_block_bootstrap_sharpe_interval_covers_the_true_sharpe_near_the_nominal_rate():
    """AR(1)-correlated returns with known Sharpe: 95% intervals should cover it in roughly 95% of samples."""
    true_mean, sd, phi, n = 0.0006, 0.01, 0.2, 750
    true_sharpe = true_mean / sd * math.sqrt(252)
    rng = np.random.default_rng(12)
    covered = 0
    trials = 60
    for trial in range(trials):
        shocks = rng.normal(0.0, sd * math.sqrt(1 - phi * phi), n)
        x = np.empty(n)
        x[0] = rng.normal(0.0, sd)
        for t in range(1, n):
            x[t] = phi * x[t - 1] + shocks[t]
        low, high = statistics.sharpe_ci(true_mean + x, n_resamples=300, seed=trial)
        covered += low <= true_sharpe <= high
    # Binomial(60, 0.95) stays above 50 with probability > 0.999; a broken interval (e.g. 50% wide) would not.
    assert covered >= 50, covered


def test_interval_contains_the_point_estimate():
    r = np.random.default_rng(3).normal(0.0004, 0.01, 500)
    low, high = statistics.annual_return_ci(r, n_resamples=300)
    assert low <= metrics.annualized_return(r) <= high


def test_probabilistic_sharpe_ratio_rises_with_the_sharpe_and_with_the_sample_length():
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.01, 5000)
    noise -= noise.mean()
    head = noise[:1000] - noise[:1000].mean()
    weak, strong = 0.0002 + head, 0.0008 + head
    assert statistics.probabilistic_sharpe_ratio(strong) > statistics.probabilistic_sharpe_ratio(weak) > 0.5
    assert statistics.probabilistic_sharpe_ratio(0.0004 + noise) > statistics.probabilistic_sharpe_ratio(
        0.0004 + noise[:500] - noise[:500].mean()
    )
    # Against its own Sharpe as the benchmark, PSR is one half.
    assert statistics.probabilistic_sharpe_ratio(strong, metrics.sharpe_ratio(strong)) == pytest.approx(0.5, abs=1e-9)


def test_deflated_sharpe_falls_as_the_number_of_trials_grows():
    r = np.random.default_rng(1).normal(0.0008, 0.01, 1000)
    values = [statistics.deflated_sharpe_ratio(r, n) for n in (1, 2, 10, 100, 1000)]
    assert values[0] == pytest.approx(statistics.probabilistic_sharpe_ratio(r))
    assert all(a > b for a, b in zip(values, values[1:]))


def test_expected_max_sharpe_matches_a_simulation_of_skill_less_trials():
    rng = np.random.default_rng(2)
    n_trials, variance = 20, 0.25
    simulated = rng.normal(0.0, math.sqrt(variance), size=(20_000, n_trials)).max(axis=1).mean()
    assert statistics.expected_max_sharpe(n_trials, variance) == pytest.approx(simulated, rel=0.05)


def test_paired_comparison_detects_a_real_edge_and_not_a_null_one():
    rng = np.random.default_rng(4)
    base = rng.normal(0.0, 0.01, 2000)
    edge = statistics.paired_comparison(base + 0.001 + rng.normal(0, 0.002, 2000), base)
    assert edge["p_value"] < 0.001 and edge["annualised_difference"] == pytest.approx(0.252, rel=0.1)
    null = statistics.paired_comparison(base + rng.normal(0, 0.002, 2000), base)
    assert null["p_value"] > 0.01
