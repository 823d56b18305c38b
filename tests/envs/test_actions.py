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


# -- factored actions: one level per asset (branching DQN) ------------------------------------------------------------


def _factored(n_assets: int = 4, levels: int = 5, **kwargs):
    from envs.actions import ActionMap

    return ActionMap("discrete", n_assets, discrete_actions="factored", factored_levels=levels, **kwargs)


def test_factored_space_grows_linearly_with_assets_not_like_the_grid():
    import gymnasium as gym

    space = _factored(50, 5).space()
    assert isinstance(space, gym.spaces.MultiDiscrete) and space.shape == (50,) and (space.nvec == 5).all()
    assert space.nvec.sum() == 250 < grid_size(50, 4)  # 250 branch values to score against 316,251 grid points


def test_a_grid_too_large_for_dqn_is_a_config_error_that_names_the_way_out():
    from core.errors import ConfigError
    from envs.actions import ActionMap

    assert ActionMap("discrete", n_assets=20, grid_steps=4).grid.shape == (8855, 20)
    with pytest.raises(ConfigError, match=r"40,920 actions.*discrete_actions: factored"):
        ActionMap("discrete", n_assets=30, grid_steps=4)
    assert ActionMap("discrete", n_assets=30, grid_steps=4, residual=True).tilts.shape[0] == 61  # 2K + 1 tilts


def test_factored_levels_express_equal_weight_concentration_and_near_zero_weights():
    action_map = _factored(4, 5, softmax_scale=3.0)
    for level in range(5):  # any level everywhere: every asset alike
        np.testing.assert_allclose(action_map(np.full(4, level)), 0.25, rtol=1e-12)
    concentrated = action_map(np.array([4, 0, 0, 0])).copy()
    assert concentrated[0] > 0.99 and concentrated[1:].max() < 0.0025  # the top level over the bottom: e^(2 * 3)
    assert concentrated[0] / concentrated[1] == pytest.approx(math.exp(6.0))
    # One branch's step multiplies its asset's weight relative to any other by the same factor, whatever the rest.
    ratios = []
    for others in ([0, 0, 0], [2, 3, 4], [4, 4, 1]):
        low = action_map(np.array([1, *others])).copy()
        high = action_map(np.array([2, *others])).copy()
        ratios.append((high[0] / high[1]) / (low[0] / low[1]))
    np.testing.assert_allclose(ratios, math.exp(3.0 * 2 / 4), rtol=1e-12)


def test_factored_residual_middle_level_is_the_base_and_the_extremes_tilt_it():
    from envs.actions import tilt_weights

    action_map = _factored(4, 5, residual=True, tilt_scale=0.7, tilt_budget=0.3)
    base = np.array([0.4, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(action_map(np.full(4, 2), None, base), base, rtol=1e-12)
    levels = np.array([4, 0, 2, 1])
    expected = tilt_weights(np.array([1.0, -1.0, 0.0, -0.5]), base, 0.7, 0.3)
    np.testing.assert_allclose(action_map(levels, None, base), expected, rtol=1e-12)
    assert action_map(levels, None, base)[0] > base[0]


@given(
    n_assets=st.integers(1, 7),
    levels=st.integers(2, 7),
    residual=st.booleans(),
    trade_rate=st.sampled_from([1.0, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_factored_batch_is_the_exact_twin_of_the_single_call(n_assets, levels, residual, trade_rate, seed):
    rng = np.random.default_rng(seed)
    action_map = _factored(n_assets, levels, residual=residual, tilt_scale=0.8, trade_rate=trade_rate)
    actions = rng.integers(0, levels, size=(16, n_assets))
    held = rng.dirichlet(np.ones(n_assets), size=16)
    bases = rng.dirichlet(np.ones(n_assets), size=16) if residual else None
    batch = action_map.batch(actions, held, bases)
    for i in range(16):
        single = action_map(actions[i], held[i], None if bases is None else bases[i])
        np.testing.assert_array_equal(single, batch[i])
        assert_weights(batch[i])


@pytest.mark.parametrize(
    "action",
    [
        np.array([2, 2, 2]),
        np.array([2, 2, 2, 5]),
        np.array([2, -1, 2, 2]),
        np.array([2.5, 2, 2, 2]),
        np.array([np.nan] * 4),
    ],
)
def test_bad_factored_actions_raise_naming_the_space(action):
    action_map = _factored(4, 5)
    with pytest.raises(ValueError, match=r"MultiDiscrete\(\[5\] \* 4\)"):
        action_map(action, np.full(4, 0.25))
    with pytest.raises(ValueError, match=r"MultiDiscrete\(\[5\] \* 4\)"):
        action_map.batch(action[None, :], np.full((1, 4), 0.25))


@pytest.mark.parametrize("base", ["none", "equal_weight"])
def test_factored_env_and_vector_env_step_alike(tiny, small_config, base):
    """The vector env (``ActionMap.batch``) plays factored actions as N single envs (``ActionMap.__call__``) do."""
    import gymnasium as gym

    from envs.config import EnvConfig
    from envs.portfolio_env import PortfolioEnv
    from envs.vector_env import PortfolioVectorEnv

    fields = {"action_mode": "discrete", "discrete_actions": "factored", "factored_levels": 3, "trade_rate": 0.5}
    config = EnvConfig.model_validate(small_config.model_dump() | fields | {"policy": {"base": base}})
    reference = gym.vector.SyncVectorEnv([lambda: PortfolioEnv(config, market=tiny.market)] * 3)
    batched = PortfolioVectorEnv(config, num_envs=3, market=tiny.market)
    assert batched.single_action_space == gym.spaces.MultiDiscrete([3] * 4)
    assert batched.action_space == reference.action_space  # gymnasium batches MultiDiscrete into an int Box
    np.testing.assert_array_equal(batched.reset(seed=3)[0], reference.reset(seed=3)[0])
    rng = np.random.default_rng(0)
    for _ in range(60):
        actions = rng.integers(0, 3, size=(3, 4))
        expected, actual = reference.step(actions), batched.step(actions)
        np.testing.assert_allclose(actual[0], expected[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(actual[1], expected[1], rtol=1e-10, atol=1e-12)


def test_factored_env_follows_the_levels_and_refuses_a_hold_action(tiny, small_config):
    from envs.config import EnvConfig
    from envs.portfolio_env import PortfolioEnv

    config = small_config.model_copy(update={"action_mode": "discrete", "discrete_actions": "factored"})
    env = PortfolioEnv(config, market=tiny.market)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([4, 2, 2, 0]))
    assert info["target_weights"][0] > info["target_weights"][1] > info["target_weights"][3]
    with pytest.raises(ValueError, match="discrete_hold"):
        EnvConfig(action_mode="discrete", discrete_actions="factored", discrete_hold=True)
