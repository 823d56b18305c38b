"""PortfolioVectorEnv: the same env as N PortfolioEnvs in gymnasium's SyncVectorEnv, step for step, only batched."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from core.errors import ConfigError
from envs.config import EnvConfig, RegimeConfig, RegimeParams
from envs.portfolio_env import ENV_ID, PortfolioEnv
from envs.registration import make_env
from envs.vector_env import PortfolioVectorEnv
from quant.regimes import from_law

N_ENVS = 5


def true_regimes(tiny) -> RegimeConfig:
    law = from_law(tiny.params.transition, tiny.params.mu, tiny.params.cov)
    return RegimeConfig(window_days=20, model=RegimeParams.model_validate(law.to_json()))


CASES = {
    "law paths, regimes, softmax, excess reward": dict(
        train_paths="law", observe_regimes=True, reward="excess_log_growth", window_days=0
    ),
    "split with random starts, discrete hold, partial trades": dict(
        train_paths="split", action_mode="discrete", discrete_hold=True, trade_rate=0.3, reward="log_growth"
    ),
    "law paths, softmax_delta, differential Sharpe": dict(
        train_paths="law", continuous_map="softmax_delta", reward="differential_sharpe", episode_days=30
    ),
    "bootstrap paths, clip, mean-variance": dict(
        train_paths="bootstrap", continuous_map="clip", reward="mean_variance"
    ),
    "whole test split: terminations": dict(split="test", random_start=False, episode_days=None),
    "law paths, residual on regime_growth, budget": dict(
        train_paths="law", policy={"base": "regime_growth", "tilt_budget": 0.5}, regimes_window=20
    ),
    "split, discrete residual on equal weight, partial trades": dict(
        action_mode="discrete", policy={"base": "equal_weight", "tilt_scale": 0.7}, trade_rate=0.25
    ),
    "split, 3 of 4 assets sampled, excess reward": dict(universe={"sample_assets": 3}, reward="excess_log_growth"),
    "law paths, 2 of 4 sampled, regimes, residual on equal weight": dict(
        train_paths="law", observe_regimes=True, universe={"sample_assets": 2}, policy={"base": "equal_weight"}
    ),
    "bootstrap paths, 3 of 4 sampled, discrete grid, differential Sharpe": dict(
        train_paths="bootstrap", action_mode="discrete", universe={"sample_assets": 3}, reward="differential_sharpe"
    ),
}


def config_for(case: dict, small_config: EnvConfig, tiny) -> EnvConfig:
    case = dict(case)
    regimes = {"regimes": true_regimes(tiny)} if case.pop("regimes_window", None) or case.get("observe_regimes") else {}
    if "policy" in case or "universe" in case:  # a validated config, as a user's YAML gives it
        return EnvConfig.model_validate(small_config.model_dump() | case | regimes)
    return small_config.model_copy(update=case | regimes)


def actions_for(space: gym.Space, rng: np.random.Generator, n: int) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=n)
    return rng.uniform(-1.0, 1.0, size=(n, *space.shape)).astype(np.float32)


def assert_same_infos(expected: dict, actual: dict, where: str) -> None:
    assert set(actual) == set(expected), f"{where}: info keys {sorted(set(actual) ^ set(expected))}"
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype and actual[key].shape == value.shape, f"{where}: info {key}"
        np.testing.assert_allclose(actual[key], value, rtol=1e-10, atol=1e-13, err_msg=f"{where}: info {key}")


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_vector_env_equals_sync_vector_env_of_portfolio_envs_step_for_step(case, tiny, small_config):
    config = config_for(CASES[case], small_config, tiny)
    reference = gym.vector.SyncVectorEnv([lambda: PortfolioEnv(config, market=tiny.market)] * N_ENVS)
    batched = PortfolioVectorEnv(config, num_envs=N_ENVS, market=tiny.market)
    assert batched.single_observation_space == reference.single_observation_space
    assert batched.single_action_space == reference.single_action_space
    assert batched.observation_space == reference.observation_space
    assert batched.action_space == reference.action_space

    expected, actual = reference.reset(seed=11), batched.reset(seed=11)
    np.testing.assert_array_equal(actual[0], expected[0])
    assert_same_infos(expected[1], actual[1], "reset")
    rng = np.random.default_rng(0)
    ends = 0
    steps = 300 if config.episode_days else reference.envs[0].n_steps + 20
    for step in range(steps):
        actions = actions_for(reference.single_action_space, rng, N_ENVS)
        expected, actual = reference.step(actions), batched.step(actions)
        where = f"step {step}"
        np.testing.assert_allclose(actual[0], expected[0], rtol=1e-6, atol=1e-6, err_msg=f"{where}: observations")
        assert actual[0].dtype == np.float32
        np.testing.assert_allclose(actual[1], expected[1], rtol=1e-10, atol=1e-12, err_msg=f"{where}: rewards")
        np.testing.assert_array_equal(actual[2], expected[2], err_msg=f"{where}: terminated")
        np.testing.assert_array_equal(actual[3], expected[3], err_msg=f"{where}: truncated")
        assert_same_infos(expected[4], actual[4], where)
        ends += int(expected[2].sum() + expected[3].sum())
    assert ends >= N_ENVS  # every sub-environment ended an episode and was reset at least once


def test_gymnasium_make_vec_and_rllibs_creator_build_the_vector_env(tiny, small_config):
    import envs  # noqa: F401  (registers the env with its vector entry point)

    vector = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", config=small_config)
    assert isinstance(vector.unwrapped, PortfolioVectorEnv) and vector.num_envs == 3
    fields = small_config.model_dump(mode="json")
    assert isinstance(make_env(fields | {"num_envs": 4}), PortfolioVectorEnv)  # what RLlib's vector entry point passes
    assert isinstance(make_env(fields), PortfolioEnv)


def test_the_vector_env_passes_gymnasiums_vector_env_checks(tiny, small_config):
    from gymnasium.utils.env_checker import data_equivalence

    env = PortfolioVectorEnv(small_config, num_envs=3, market=tiny.market)
    first, _ = env.reset(seed=5)
    again, _ = env.reset(seed=5)
    assert data_equivalence(first, again)  # seeded resets repeat
    assert env.observation_space.contains(first)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP


def test_the_step_after_an_episode_ends_resets_that_env_only_and_ignores_its_action(tiny, small_config):
    config = small_config.model_copy(update={"episode_days": 3})
    env = PortfolioVectorEnv(config, num_envs=2, market=tiny.market)
    env.reset(seed=0)
    hold = np.zeros((2, 4), dtype=np.float32)
    for _ in range(3):
        _, rewards, terminated, truncated, _ = env.step(hold)
    assert truncated.all() and not terminated.any()
    nonsense = np.array([[np.nan] * 4, [np.nan] * 4], dtype=np.float32)  # ignored: both sub-environments reset
    observations, rewards, terminated, truncated, infos = env.step(nonsense)
    assert (rewards == 0).all() and not terminated.any() and not truncated.any()
    np.testing.assert_allclose(observations[:, -4:], 0.25)
    assert infos["_wealth"].all() and not infos.get("_turnover", np.zeros(2, bool)).any()


def test_reset_mask_resets_only_the_masked_envs(tiny, small_config):
    env = PortfolioVectorEnv(small_config, num_envs=3, market=tiny.market)
    env.reset(seed=1)
    env.step(np.ones((3, 4), dtype=np.float32))
    observations, infos = env.reset(options={"reset_mask": np.array([True, False, False])})
    assert infos["_wealth"].tolist() == [True, False, False]
    np.testing.assert_allclose(observations[0, -4:], 0.25)
    assert not np.allclose(observations[1, -4:], 0.25)  # still holding what the step traded to


@pytest.mark.parametrize(
    "update, actions, message",
    [
        ({}, np.zeros((2, 3), dtype=np.float32), r"actions must be \(2, 4\) finite numbers"),
        ({}, np.full((2, 4), np.inf, dtype=np.float32), r"actions must be \(2, 4\) finite numbers"),
        ({"action_mode": "discrete"}, np.array([0, 35]), r"actions must be 2 indices in Discrete\(35\)"),
    ],
)
def test_bad_actions_are_rejected_with_the_expected_shape(tiny, small_config, update, actions, message):
    env = PortfolioVectorEnv(small_config.model_copy(update=update), num_envs=2, market=tiny.market)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(actions)


@pytest.mark.parametrize("num_envs", [0, -1, 2.5])
def test_num_envs_must_be_a_positive_integer(tiny, small_config, num_envs):
    with pytest.raises(ConfigError, match="num_envs"):
        PortfolioVectorEnv(small_config, num_envs=num_envs, market=tiny.market)
