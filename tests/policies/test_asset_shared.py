"""policies.shared_ppo and policies.shared_sac: one network for every asset, so reordering assets reorders the
actions (and leaves values unchanged), and a module built for 4 assets allocates 20 or 200; no Ray needed."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.distribution.torch.torch_distribution import TorchDiagGaussian
from ray.rllib.core.rl_module.rl_module import RLModule

from envs.actions import ActionMap
from envs.config import EnvConfig, PolicyConfig
from envs.layout import AssetLayout
from envs.portfolio_env import PortfolioEnv
from policies.asset_heads import SharedModelConfig
from policies.modules import SquashedGaussian
from policies.policy import Policy
from policies.shared_ppo import AssetSharedPPOModule
from policies.shared_sac import AssetSharedSACModule

LAYOUT = AssetLayout(window_days=3, n_extras=0, n_regimes=2, base=True)


def build(module_class, layout: AssetLayout = LAYOUT, n_assets: int = 4, squash: bool = False, seed: int = 0):
    """A module for ``n_assets`` assets with weights drawn wide enough that outputs differ across assets."""
    torch.manual_seed(seed)
    model_config = SharedModelConfig(layout, hidden=(16, 16), activation="tanh", squash=squash).to_model_config()
    module = module_class(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (layout.size(n_assets),), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (n_assets,), np.float32),
        model_config=model_config | {"twin_q": True},
    )
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.5)
    return module.eval()


def observations(layout: AssetLayout, n_assets: int, n: int, seed: int = 0) -> np.ndarray:
    """``(n, size)`` observations: normal features, base and held weights on the simplex."""
    rng = np.random.default_rng(seed)
    size = layout.size(n_assets)
    rows_at, market_at = layout.split(np.arange(size))  # where each asset's features sit in the observation
    obs = np.zeros((n, size), dtype=np.float32)
    obs[:, market_at] = rng.dirichlet(np.ones(layout.n_global), size=n) if layout.n_global else 0.0
    obs[:, rows_at[:, :-2]] = rng.normal(size=(n, n_assets, layout.per_asset - 2))
    obs[:, rows_at[:, -2]] = rng.dirichlet(np.ones(n_assets), size=n)  # the base's weights
    obs[:, rows_at[:, -1]] = rng.dirichlet(np.ones(n_assets), size=n)  # the weights held
    return obs


def permuted(layout: AssetLayout, obs: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``obs`` with asset ``order[k]`` in slot ``k``: every per-asset number moves, market-wide ones stay."""
    rows_at, _ = layout.split(np.arange(obs.shape[-1]))
    index = np.arange(obs.shape[-1])
    index[rows_at] = rows_at[order]
    return obs[:, index]


def dist_inputs(module, obs: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return module.forward_inference({"obs": torch.from_numpy(obs)})["action_dist_inputs"]


def test_permuting_assets_permutes_the_ppo_action_means_and_log_stds_and_keeps_the_value():
    module = build(AssetSharedPPOModule)
    obs = observations(LAYOUT, 6, 5)
    order = np.array([3, 0, 5, 1, 4, 2])
    inputs, inputs_permuted = dist_inputs(module, obs), dist_inputs(module, permuted(LAYOUT, obs, order))
    means, log_stds = inputs.chunk(2, dim=-1)
    assert means.std(dim=-1).min() > 1e-3, "the same mean for every asset: the test could not see a permutation"
    expected = torch.cat([means[:, order], log_stds[:, order]], dim=-1)
    torch.testing.assert_close(inputs_permuted, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        values = module.compute_values({"obs": torch.from_numpy(obs)})
        values_permuted = module.compute_values({"obs": torch.from_numpy(permuted(LAYOUT, obs, order))})
    assert values.shape == (5,)
    torch.testing.assert_close(values_permuted, values, rtol=1e-5, atol=1e-6)


def test_sac_q_is_invariant_to_reordering_assets_with_their_actions_and_reads_which_asset_gets_which_action():
    module = build(AssetSharedSACModule)
    obs, order = observations(LAYOUT, 5, 8), np.array([4, 2, 0, 1, 3])
    actions = np.random.default_rng(1).uniform(-1, 1, size=(8, 5)).astype(np.float32)

    def q(observed, acted):
        with torch.no_grad():
            return module.compute_q_values({"obs": torch.from_numpy(observed), "actions": torch.from_numpy(acted)})

    values = q(obs, actions)
    assert values.shape == (8,)
    torch.testing.assert_close(q(permuted(LAYOUT, obs, order), actions[:, order]), values, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(q(obs, actions[:, order]), values, atol=1e-4)  # actions moved, assets did not
    means = dist_inputs(module, obs).chunk(2, dim=-1)[0]
    torch.testing.assert_close(dist_inputs(module, permuted(LAYOUT, obs, order)).chunk(2, dim=-1)[0], means[:, order])


@pytest.mark.parametrize("module_class", [AssetSharedPPOModule, AssetSharedSACModule])
@pytest.mark.parametrize("n_assets", [20, 200])
def test_a_module_built_for_4_assets_runs_on_any_number_of_assets(module_class, n_assets):
    module = build(module_class, n_assets=4)
    obs = observations(LAYOUT, n_assets, 3)
    inputs = dist_inputs(module, obs)
    assert inputs.shape == (3, 2 * n_assets) and torch.isfinite(inputs).all()
    one = dist_inputs(module, obs[:1])
    assert one.shape == (1, 2 * n_assets)
    torch.testing.assert_close(one, inputs[:1])
    with torch.no_grad():
        obs_t = torch.from_numpy(obs)
        if module_class is AssetSharedPPOModule:
            assert module.compute_values({"obs": obs_t}).shape == (3,)
        else:
            actions = torch.zeros(3, n_assets)
            assert module.compute_q_values({"obs": obs_t, "actions": actions}).shape == (3,)


@pytest.mark.parametrize("module_class", [AssetSharedPPOModule, AssetSharedSACModule])
@pytest.mark.parametrize("inference_only", [False, True])
def test_checkpoint_round_trip_restores_the_class_the_layout_and_the_outputs(module_class, inference_only, tmp_path):
    module = build(module_class, squash=module_class is AssetSharedPPOModule)
    if inference_only:  # what env runners hold: the policy alone
        spec = module_class(
            observation_space=module.observation_space,
            action_space=module.action_space,
            model_config=module.model_config,
            inference_only=True,
        )
        spec.set_state(module.get_state(inference_only=True))
        module = spec.eval()
    module.save_to_path(str(tmp_path / "module"))
    restored = RLModule.from_checkpoint(str((tmp_path / "module").resolve()))
    assert type(restored) is module_class and bool(restored.inference_only) == inference_only
    assert SharedModelConfig.from_model_config(restored.model_config) == SharedModelConfig.from_model_config(
        module.model_config
    )
    restored.eval()
    obs = observations(LAYOUT, 20, 4)
    torch.testing.assert_close(dist_inputs(restored, obs), dist_inputs(module, obs), rtol=0, atol=0)
    assert restored.get_inference_action_dist_cls() is module.get_inference_action_dist_cls()
    if not inference_only and module_class is AssetSharedPPOModule:
        obs_t = torch.from_numpy(obs)
        torch.testing.assert_close(restored.compute_values({"obs": obs_t}), module.compute_values({"obs": obs_t}))


def test_inference_only_modules_hold_no_critic_and_the_action_distribution_follows_squash():
    ppo = AssetSharedPPOModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (LAYOUT.size(4),), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
        model_config=SharedModelConfig(LAYOUT, hidden=(8,)).to_model_config(),
        inference_only=True,
    )
    assert not hasattr(ppo, "vf_encoder") and not hasattr(ppo, "vf")
    assert ppo.get_inference_action_dist_cls() is TorchDiagGaussian
    assert build(AssetSharedPPOModule, squash=True).get_train_action_dist_cls() is SquashedGaussian
    sac = build(AssetSharedSACModule)
    assert sac.get_inference_action_dist_cls() is SquashedGaussian  # deterministic action tanh(loc), inside bounds
    assert all(not any(k.startswith(a) for a in ("qf", "target")) for k in sac.get_state(inference_only=True))


def test_a_layout_that_does_not_fit_the_training_spaces_is_refused():
    other = AssetLayout(window_days=3, n_regimes=3, base=True)  # one regime more than the env observes
    with pytest.raises(ValueError, match="observation_space: 26 numbers, but the layout over 4 assets has 27"):
        AssetSharedPPOModule(
            observation_space=gym.spaces.Box(-np.inf, np.inf, (LAYOUT.size(4),), np.float32),
            action_space=gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
            model_config=SharedModelConfig(other).to_model_config(),
        )
    with pytest.raises(ValueError, match="needs 'layout'"):
        SharedModelConfig.from_model_config({"fcnet_hiddens": [16]})


@pytest.mark.parametrize("module_class", [AssetSharedPPOModule, AssetSharedSACModule])
def test_policy_turns_the_module_into_valid_weights_on_the_training_universe_and_on_20_assets(tiny, module_class):
    config = EnvConfig(
        window_days=3,
        vol_window_days=20,
        episode_days=40,
        observe_regimes=True,
        regimes={"n_regimes": 2, "restarts": 1},
        policy=PolicyConfig(base="equal_weight"),
    )
    env = PortfolioEnv(config, market=tiny.market)
    layout = AssetLayout.of_env(config, env.regime_model.n_regimes)
    assert layout == LAYOUT and env.observation_space.shape == (layout.size(4),)
    module = build(module_class, layout=layout, squash=module_class is AssetSharedPPOModule)
    observation, _ = env.reset(seed=0)
    rows = [observation]
    for _ in range(9):
        observation, *_ = env.step(env.action_space.sample())
        rows.append(observation)
    obs = np.stack(rows).astype(np.float32)
    policy = Policy(module, env.action_map)
    weights = policy.weights_batch(obs)
    assert weights.shape == (10, 4)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)
    assert (weights >= 0).all() and len(np.unique(weights.round(8), axis=0)) > 1
    actions = policy.actions(obs)
    assert np.abs(actions).max() <= 1.0  # squashed: tanh of the mean
    for row, action, observed in zip(weights, actions, obs):
        np.testing.assert_allclose(row, env.action_map(action, observed[-4:], observed[-8:-4] / observed[-8:-4].sum()))

    wide = observations(layout, 20, 6)
    weights = Policy(module, ActionMap.from_config(config, 20)).weights_batch(wide)
    assert weights.shape == (6, 20)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)
    assert (weights >= 0).all()
