"""backtesting.metrics: each measure against values worked out by hand on tiny series."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from backtesting import metrics

SQRT_252 = math.sqrt(252)


def test_annualized_return_compounds_to_a_year_of_252_days():
    assert metrics.annualized_return([0.10, -0.10]) == pytest.approx(0.99**126 - 1)  # (1.1 * 0.9) ** (252 / 2) - 1
    assert metrics.annualized_return([0.001] * 252) == pytest.approx(1.001**252 - 1)
    assert metrics.annualized_return([0.0, 0.0, 0.0]) == 0.0


def test_annualized_volatility_is_the_sample_standard_deviation_times_sqrt_252():
    # mean 0, squared deviations 4 x 1e-4, ddof 1: variance 4e-4 / 3
    assert metrics.annualized_volatility([0.01, -0.01, 0.01, -0.01]) == pytest.approx(math.sqrt(4e-4 / 3) * SQRT_252)


def test_sharpe_ratio_uses_returns_in_excess_of_the_risk_free_rate():
    returns = [0.02, 0.00, 0.01, 0.03]
    # excess over 1% a day: [0.01, -0.01, 0.00, 0.02], mean 0.005, deviations +-0.005 / +-0.015: variance 5e-4 / 3
    expected = 0.005 / math.sqrt(5e-4 / 3) * SQRT_252

    assert metrics.sharpe_ratio(returns, 0.01) == pytest.approx(expected)
    assert metrics.sharpe_ratio(returns, np.full(4, 0.01)) == pytest.approx(expected)
    # without a risk-free rate: mean 0.015, same deviations
    assert metrics.sharpe_ratio(returns) == pytest.approx(0.015 / math.sqrt(5e-4 / 3) * SQRT_252)


def test_sharpe_ratio_of_a_riskless_series_is_undefined():
    assert math.isnan(metrics.sharpe_ratio([0.001, 0.001, 0.001]))


def test_sortino_ratio_divides_by_downside_deviation_below_the_risk_free_rate():
    # excess [0.01, -0.01, 0.00, 0.02]: downside deviation sqrt((0.01^2) / 4) = 0.005, mean 0.005
    assert metrics.sortino_ratio([0.02, 0.00, 0.01, 0.03], 0.01) == pytest.approx(SQRT_252)
    assert math.isnan(metrics.sortino_ratio([0.01, 0.02]))  # no day below the risk-free rate


def test_max_drawdown_is_the_largest_peak_to_trough_loss():
    # wealth 1.1, 0.55, 0.66, 0.99, 0.891: the trough 0.55 after the peak 1.1 loses half
    returns = [0.10, -0.50, 0.20, 0.50, -0.10]

    np.testing.assert_allclose(metrics.drawdowns(returns), [0.0, 0.5, 0.4, 0.1, 0.19])
    assert metrics.max_drawdown(returns) == pytest.approx(0.5)


def test_a_loss_on_the_first_day_counts_from_initial_wealth():
    assert metrics.max_drawdown([-0.20, 0.10]) == pytest.approx(0.20)


@given(returns=arrays(np.float64, st.integers(2, 40), elements=st.floats(-0.9, 1.0)))
def test_max_drawdown_equals_the_worst_loss_between_any_two_days(returns):
    wealth = np.concatenate([[1.0], np.cumprod(1.0 + returns)])
    worst = max(1.0 - wealth[j] / wealth[i] for i in range(len(wealth)) for j in range(i, len(wealth)))

    assert metrics.max_drawdown(returns) == pytest.approx(worst, abs=1e-12)


def test_calmar_ratio_is_annual_return_over_max_drawdown():
    returns = [0.10, -0.50, 0.20, 0.50, -0.10]

    assert metrics.calmar_ratio(returns) == pytest.approx((0.891 ** (252 / 5) - 1) / 0.5)
    assert math.isnan(metrics.calmar_ratio([0.01, 0.02]))  # never below its peak


def test_cvar_95_is_the_mean_loss_of_the_worst_5_percent_of_days():
    returns = np.full(40, 0.01)
    returns[[3, 17, 30]] = [-0.08, -0.06, -0.05]

    assert metrics.cvar(returns, 0.95) == pytest.approx(0.07)  # ceil(0.05 * 40) = 2 worst days: -0.08, -0.06
    assert metrics.cvar(returns[:20], 0.95) == pytest.approx(0.08)  # 5% of 20 days is exactly 1 day, not 2
    assert metrics.cvar(returns, 0.90) == pytest.approx((0.08 + 0.06 + 0.05 - 0.01) / 4)  # 4 worst days


def test_annualized_turnover_and_total_cost():
    assert metrics.annualized_turnover([0.0, 2.0, 0.0, 0.0]) == pytest.approx(0.5 * 252)
    assert metrics.total_cost([0.001, 0.0, 0.0005]) == pytest.approx(0.0015)


def test_summary_row_holds_every_measure():
    returns = np.array([0.10, -0.50, 0.20, 0.50, -0.10])

    row = metrics.summary(returns, turnover=np.full(5, 0.1), costs=np.full(5, 0.0001), rf_daily=0.0)

    assert row["annual_return"] == metrics.annualized_return(returns)
    assert row["max_drawdown"] == pytest.approx(0.5)
    assert row["cvar_95"] == pytest.approx(0.5)
    assert row["mean_daily_log_growth"] == pytest.approx(math.log(0.891) / 5)
    assert row["annual_turnover"] == pytest.approx(25.2) and row["total_cost"] == pytest.approx(0.0005)
    assert set(metrics.summary(returns)) == set(row) - {"annual_turnover", "total_cost"}


@pytest.mark.parametrize(
    ("returns", "message"),
    [
        ([0.01], "at least 2"),
        ([[0.01, 0.02]], "1-D"),
        ([0.01, float("nan")], "NaN"),
        ([0.01, float("inf")], "NaN or infinity"),
    ],
)
def test_measures_reject_series_they_cannot_measure(returns, message):
    with pytest.raises(ValueError, match=message):
        metrics.sharpe_ratio(returns)
