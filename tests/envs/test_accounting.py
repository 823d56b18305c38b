"""envs.accounting: the one place costs are charged and weights drift."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from envs.accounting import rebalance


def test_rebalance_charges_cost_on_turnover_and_earns_the_target_portfolio():
    current = np.array([0.5, 0.5])
    target = np.array([0.8, 0.2])
    relatives = np.array([1.10, 0.95])

    log_growth, turnover, cost = rebalance(current, target, relatives, 0.001, np.empty(2))

    assert turnover == pytest.approx(0.6)  # |0.8 - 0.5| + |0.2 - 0.5|
    assert cost == pytest.approx(0.0006)
    gross = 0.8 * 1.10 + 0.2 * 0.95  # 1.07
    assert log_growth == pytest.approx(math.log(1 - 0.0006) + math.log(gross), rel=1e-14)
    np.testing.assert_allclose(current, [0.88 / gross, 0.19 / gross])  # drifted weights, overwritten in place


def test_holding_the_current_weights_costs_nothing():
    current = np.array([0.3, 0.7])

    log_growth, turnover, cost = rebalance(current, current.copy(), np.array([1.0, 1.02]), 0.01, np.empty(2))

    assert turnover == 0.0 and cost == 0.0
    assert log_growth == pytest.approx(math.log(0.3 + 0.7 * 1.02))


@given(seed=st.integers(0, 2**32 - 1), cost_bps=st.floats(0.0, 100.0))
def test_drifted_weights_stay_on_the_simplex_and_growth_is_net_of_cost(seed, cost_bps):
    rng = np.random.default_rng(seed)
    current, target = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(5))
    relatives = np.exp(rng.normal(0, 0.05, size=5))
    expected_cost = cost_bps / 1e4 * np.abs(target - current).sum()

    log_growth, _, cost = rebalance(current, target, relatives, cost_bps / 1e4, np.empty(5))

    assert cost == pytest.approx(expected_cost, rel=1e-12, abs=1e-18)
    assert math.exp(log_growth) == pytest.approx((1 - expected_cost) * (target @ relatives), rel=1e-12)
    assert (current >= 0).all() and current.sum() == pytest.approx(1.0, abs=1e-12)
