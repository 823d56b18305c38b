"""envs.actions: every action maps to long-only weights summing to 1; the discrete grid covers the simplex."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from envs.actions import clip_weights, grid_size, simplex_grid, softmax_weights


def assert_weights(weights: np.ndarray) -> None:
    assert np.isfinite(weights).all()
    assert (weights >= 0).all()
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)


def test_four_assets_at_quarter_steps_give_35_valid_mixes():
    grid = simplex_grid(4, 4)

    assert grid.shape == (35, 4) == (grid_size(4, 4), 4)
    for weights in grid:
        assert_weights(weights)


@given(n_assets=st.integers(1, 5), steps=st.integers(1, 6))
def test_grid_is_every_multiple_of_one_over_steps_on_the_simplex_exactly_once(n_assets, steps):
    grid = simplex_grid(n_assets, steps)

    assert len(grid) == grid_size(n_assets, steps) == math.comb(steps + n_assets - 1, n_assets - 1)
    units = grid * steps
    np.testing.assert_allclose(units, np.round(units), atol=1e-9)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert (grid >= 0).all()
    assert len({tuple(row) for row in np.round(units).astype(int)}) == len(grid)
    for k in range(n_assets):  # every asset can be held alone, at 100%
        assert any(np.array_equal(row, np.eye(n_assets)[k]) for row in grid)


@given(action=arrays(np.float64, st.integers(1, 8), elements=st.floats(-1e300, 1e300)), scale=st.floats(0.1, 50.0))
def test_softmax_maps_any_finite_action_to_valid_weights(action, scale):
    weights = softmax_weights(action, scale, np.empty_like(action))

    assert_weights(weights)


def test_softmax_of_a_zero_action_is_equal_weight_and_larger_actions_get_more_weight():
    np.testing.assert_allclose(softmax_weights(np.zeros(4), 3.0, np.empty(4)), 0.25)

    weights = softmax_weights(np.array([-1.0, 0.0, 0.5, 1.0]), 3.0, np.empty(4))
    assert (np.diff(weights) > 0).all()
    assert weights[3] / weights[0] == pytest.approx(math.exp(6.0))  # actions clip to [-1, 1]: ratio at most e^(2 scale)


def test_softmax_clips_actions_to_the_unit_box():
    np.testing.assert_allclose(
        softmax_weights(np.array([5.0, -7.0]), 2.0, np.empty(2)),
        softmax_weights(np.array([1.0, -1.0]), 2.0, np.empty(2)),
    )


@given(action=arrays(np.float64, st.integers(1, 8), elements=st.floats(-10.0, 10.0)))
def test_clip_maps_any_finite_action_to_valid_weights(action):
    assert_weights(clip_weights(action, np.empty_like(action)))


def test_clip_normalises_the_positive_part_and_falls_back_to_equal_weight():
    np.testing.assert_allclose(clip_weights(np.array([1.0, -0.5, 0.0, 0.5]), np.empty(4)), [2 / 3, 0.0, 0.0, 1 / 3])
    np.testing.assert_allclose(clip_weights(np.array([3.0, 1.0]), np.empty(2)), [0.5, 0.5])  # clipped to 1 each
    np.testing.assert_allclose(clip_weights(np.array([-1.0, -0.2, 0.0]), np.empty(3)), 1 / 3)


def test_hold_action_keeps_the_weights_held_and_shifts_the_grid():
    import numpy as np

    from envs.actions import ActionMap, simplex_grid

    plain = ActionMap("discrete", 4, 4)
    hold = ActionMap("discrete", 4, 4, discrete_hold=True)
    assert plain.space().n == 35 and hold.space().n == 36
    held = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(hold(0, held), held)
    np.testing.assert_array_equal(hold(5, held), simplex_grid(4, 4)[4])


def test_hold_action_trades_nothing_in_the_env(tiny, small_config):
    from envs.portfolio_env import PortfolioEnv

    env = PortfolioEnv(
        small_config.model_copy(update={"action_mode": "discrete", "discrete_hold": True}), market=tiny.market
    )
    env.reset(seed=0)
    _, _, _, _, info = env.step(7)
    assert info["turnover"] > 0
    for _ in range(5):
        _, _, _, _, info = env.step(0)
        assert info["turnover"] == 0.0 and info["cost"] == 0.0


def test_trade_rate_moves_only_that_fraction_of_the_way_to_the_target():
    import numpy as np

    from envs.actions import ActionMap

    held = np.array([0.7, 0.1, 0.1, 0.1])
    full = ActionMap("continuous", 4, softmax_scale=3.0)
    partial = ActionMap("continuous", 4, softmax_scale=3.0, trade_rate=0.25)
    action = np.array([1.0, -1.0, 0.0, 0.5])
    target = full(action, held).copy()

    weights = partial(action, held)
    np.testing.assert_allclose(weights, held + 0.25 * (target - held), rtol=1e-12)
    assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0)
    # A steady target is approached geometrically: the gap shrinks by (1 - rate) per step.
    for _ in range(40):
        held = partial(action, held).copy()
    np.testing.assert_allclose(held, target, atol=0.75**40)
