"""policies.factored_q: branching Q-values (B, K, L), greedy and per-branch epsilon-greedy levels, checkpoints; no Ray."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.layout import AssetLayout
from policies.factored_q import FactoredQModule

LAYOUT = AssetLayout(window_days=3, n_regimes=2, base=True)  # 3 returns, volatility, base weight, held; 2 regimes
LEVELS = 5


def module(n_assets: int = 4, kind: str = "mlp", *, dueling: bool = True, **model_config) -> FactoredQModule:
    size = LAYOUT.size(n_assets)
    config = {"kind": kind, "hidden": [16, 16], "activation": "tanh", "levels": LEVELS, "dueling": dueling}
    if kind == "asset_shared":
        config["layout"] = LAYOUT.to_json()
    torch.manual_seed(0)
    return FactoredQModule(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (size,), np.float32),
        action_space=gym.spaces.MultiDiscrete([LEVELS] * n_assets),
        model_config=config | model_config,
    )


def observations(n_assets: int, rows: int = 32, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(rows, LAYOUT.size(n_assets))).astype(np.float32)
    obs[:, -2 * n_assets :] = np.abs(obs[:, -2 * n_assets :]) / n_assets  # weights are non-negative
    return torch.from_numpy(obs)


@pytest.mark.parametrize("kind", ["mlp", "asset_shared"])
@pytest.mark.parametrize("dueling", [True, False])
def test_q_values_are_one_per_level_of_each_asset_and_actions_one_level_per_asset(kind, dueling):
    net = module(4, kind, dueling=dueling)
    obs = observations(4)
    q = net.compute_q_values({"obs": obs})["qf_preds"]
    assert q.shape == (32, 4, LEVELS)
    actions = net.forward_inference({"obs": obs})["actions"]
    assert actions.shape == (32, 4) and actions.dtype == torch.int64
    torch.testing.assert_close(actions, q.argmax(dim=-1))


def test_dueling_q_values_are_a_shared_state_value_plus_centred_advantages():
    net = module(4, "mlp", dueling=True)
    obs = observations(4)
    q = net.compute_q_values({"obs": obs})["qf_preds"]
    hidden = net.q_net.trunk(obs)
    advantages = net.q_net.advantages(hidden).reshape(32, 4, LEVELS)
    value = net.q_net.value(hidden)
    torch.testing.assert_close(q.mean(dim=-1), value.expand(32, 4))  # every branch's mean Q is the one V(s)
    torch.testing.assert_close(q - q.mean(dim=-1, keepdim=True), advantages - advantages.mean(-1, keepdim=True))


@pytest.mark.parametrize("n_assets", [4, 20, 50])
def test_the_asset_shared_module_trained_on_4_assets_runs_on_any_number(n_assets):
    net = module(4, "asset_shared")
    q = net.compute_q_values({"obs": observations(n_assets)})["qf_preds"]
    assert q.shape == (32, n_assets, LEVELS)
    assert net.forward_inference({"obs": observations(n_assets)})["actions"].shape == (32, n_assets)


def test_the_asset_shared_module_reorders_its_branches_with_the_assets():
    net = module(6, "asset_shared")
    obs = observations(6)
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    per_asset, market = LAYOUT.split(obs)
    permuted = per_asset[:, order]
    # Rebuild the observation in the env's order: returns lag-major, volatility, market-wide, base, held.
    flat = [
        permuted[..., :3].transpose(1, 2).reshape(32, -1),
        permuted[..., 3],
        market,
        permuted[..., 4],
        permuted[..., 5],
    ]
    q = net.compute_q_values({"obs": obs})["qf_preds"]
    q_permuted = net.compute_q_values({"obs": torch.cat(flat, dim=-1)})["qf_preds"]
    torch.testing.assert_close(q_permuted, q[:, order], rtol=1e-5, atol=1e-6)


def test_the_mlp_module_refuses_a_grid_action_space():
    with pytest.raises(ValueError, match="MultiDiscrete"):
        FactoredQModule(
            observation_space=gym.spaces.Box(-1, 1, (10,), np.float32),
            action_space=gym.spaces.Discrete(35),
            model_config={"kind": "mlp", "hidden": [8]},
        )


def test_exploration_with_epsilon_zero_is_inference_and_with_epsilon_one_uniform_per_branch():
    net = module(4, "mlp", epsilon=[[0, 1.0], [1000, 0.0]])  # DQN's schedule: 1 at step 0, 0 from step 1000
    obs = observations(4, rows=4000)
    greedy = net.forward_inference({"obs": obs})["actions"]
    torch.testing.assert_close(net.forward_exploration({"obs": obs}, t=1000)["actions"], greedy)

    torch.manual_seed(1)
    explored = net.forward_exploration({"obs": obs}, t=0)["actions"]
    for branch in range(4):
        frequencies = torch.bincount(explored[:, branch], minlength=LEVELS).float() / len(obs)
        assert (frequencies - 1 / LEVELS).abs().max() < 0.03, frequencies  # 4,000 draws: sd 0.006
    assert (explored != greedy).float().mean() == pytest.approx(1 - 1 / LEVELS, abs=0.03)
    halfway = net.forward_exploration({"obs": obs}, t=500)["actions"]  # epsilon 0.5: 0.5 * 4 / 5 branches differ
    assert (halfway != greedy).float().mean() == pytest.approx(0.4, abs=0.03)
    # Branches explore independently (not whole rows at once): rows differing in exactly one branch ~ Binomial(4, 0.4).
    assert ((halfway != greedy).sum(dim=1) == 1).float().mean() == pytest.approx(4 * 0.4 * 0.6**3, abs=0.03)


@pytest.mark.parametrize("kind", ["mlp", "asset_shared"])
def test_a_saved_module_restores_with_rllib_from_checkpoint_and_acts_the_same(kind, tmp_path):
    from ray.rllib.core.rl_module.rl_module import RLModule

    net = module(4, kind)
    net.make_target_networks()  # as the learner's module has them; the export holds them too
    net.save_to_path(str(tmp_path.resolve()))
    restored = RLModule.from_checkpoint(str(tmp_path.resolve()))
    assert type(restored) is FactoredQModule and restored.kind == kind
    obs = observations(4)
    torch.testing.assert_close(
        restored.compute_q_values({"obs": obs})["qf_preds"], net.compute_q_values({"obs": obs})["qf_preds"]
    )
    torch.testing.assert_close(
        restored.forward_inference({"obs": obs})["actions"], net.forward_inference({"obs": obs})["actions"]
    )


def test_train_forward_gives_online_next_and_target_q_values(tmp_path):
    net = module(4, "mlp", double_q=True)
    net.make_target_networks()
    with torch.no_grad():  # the target network lags the online one
        for parameter in net.q_net.parameters():
            parameter.add_(0.1)
    obs, next_obs = observations(4, seed=1), observations(4, seed=2)
    out = net.forward_train({"obs": obs, "new_obs": next_obs})
    torch.testing.assert_close(out["qf_preds"], net.q_net(obs))
    torch.testing.assert_close(out["qf_next_preds"], net.q_net(next_obs))
    torch.testing.assert_close(out["qf_target_next_preds"], net._target_q_net(next_obs))
    assert not torch.allclose(out["qf_next_preds"], out["qf_target_next_preds"])
