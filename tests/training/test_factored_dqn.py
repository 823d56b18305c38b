"""training.factored_dqn: the branching TD target and loss, the replay of per-asset actions, the wiring, and a short
real run on a local Ray that exports a policy allocating valid weights."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from core.errors import ConfigError
from training.algorithms import build_algorithm_config
from training.config import resolve_train_config
from training.factored_dqn import FactoredDQNTorchLearner, branching_td

FACTORED = {"env": {"action_mode": "discrete", "discrete_actions": "factored"}}


def test_the_target_is_the_reward_plus_the_discounted_mean_over_branches_of_the_target_nets_values():
    # One row, 2 branches, 3 levels.
    q = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]])
    q_target_next = torch.tensor([[[10.0, 0.0, 30.0], [0.0, 20.0, 7.0]]])
    q_next = torch.tensor([[[0.0, 9.0, 0.0], [9.0, 0.0, 0.0]]])  # the online net prefers level 1, then level 0
    actions, rewards, discounts = torch.tensor([[2, 0]]), torch.tensor([1.0]), torch.tensor([0.5])

    chosen, target = branching_td(q, actions, q_target_next, rewards, discounts, q_next)
    torch.testing.assert_close(chosen, torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(target, torch.tensor([1.0 + 0.5 * (0.0 + 0.0) / 2]))  # target values at 1 and 0
    _, target = branching_td(q, actions, q_target_next, rewards, discounts)  # no double Q: the target's own max
    torch.testing.assert_close(target, torch.tensor([1.0 + 0.5 * (30.0 + 20.0) / 2]))
    _, target = branching_td(q, actions, q_target_next, rewards, torch.tensor([0.0]))  # terminated
    torch.testing.assert_close(target, rewards)


def _learner(levels: int = 3, n_assets: int = 4, obs_size: int = 6, **training):
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from policies.factored_q import FactoredQModule
    from training.replay_algorithms import ArrayReplayDQNConfig

    config = (
        ArrayReplayDQNConfig()
        .framework("torch")
        .environment(
            observation_space=gym.spaces.Box(-1.0, 1.0, (obs_size,), np.float32),
            action_space=gym.spaces.MultiDiscrete([levels] * n_assets),
        )
        .rl_module(
            model_config={"kind": "mlp", "hidden": [16], "levels": levels},
            rl_module_spec=RLModuleSpec(module_class=FactoredQModule),
        )
        .learners(learner_class=FactoredDQNTorchLearner)
        .training(**{"lr": 1e-2, "gamma": 0.5, "dueling": False} | training)
    )
    torch.manual_seed(0)  # the module's initial weights
    return config.build_learner(env=None)


def _batch(rows: int = 64, n_assets: int = 4, obs_size: int = 6, levels: int = 3, seed: int = 0, terminal=True):
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

    from training.replay import TransitionReplay

    rng = np.random.default_rng(seed)
    replay = TransitionReplay(rows, seed=seed)  # actions (K,) per step go through the array buffer as they would
    replay.add_chunk(
        "episode",
        obs=rng.uniform(-1, 1, size=(rows + 1, obs_size)).astype(np.float32),
        actions=rng.integers(0, levels, size=(rows, n_assets)),
        rewards=rng.normal(size=rows).astype(np.float32),
        terminated=terminal,
        done=True,
    )
    columns = replay.sample(rows)
    assert columns["actions"].shape == (rows, n_assets) and columns["actions"].dtype == np.int64
    if terminal:
        columns["terminateds"][:] = True
    return columns, MultiAgentBatch({"default_policy": SampleBatch(columns)}, env_steps=rows)


@pytest.mark.parametrize("double_q", [True, False])
def test_the_learner_reports_the_branching_huber_loss_of_its_module(double_q):
    learner = _learner(double_q=double_q)
    columns, batch = _batch(terminal=False)
    module = learner.module["default_policy"]
    tensors = {name: torch.as_tensor(values) for name, values in columns.items()}
    with torch.no_grad():
        out = module.forward_train({"obs": tensors["obs"], "new_obs": tensors["new_obs"]})
        chosen, target = branching_td(
            out["qf_preds"],
            tensors["actions"],
            out["qf_target_next_preds"],
            tensors["rewards"],
            0.5 ** tensors["n_step"].float() * (1.0 - tensors["terminateds"].float()),
            out["qf_next_preds"] if double_q else None,
        )
        expected = torch.nn.functional.huber_loss(chosen, target[:, None].expand_as(chosen))
    results = learner.update(batch=batch, timesteps={"num_env_steps_sampled_lifetime": 0})["default_policy"]
    assert results["qf_loss"].peek() == pytest.approx(expected.item(), rel=1e-5)
    assert results["qf_mean"].peek() == pytest.approx(chosen.mean().item(), rel=1e-5)
    assert results["td_error_mean"].peek() == pytest.approx((chosen - target[:, None]).abs().mean().item(), rel=1e-5)


def test_on_terminal_transitions_every_branch_learns_the_reward():
    learner = _learner(levels=3, n_assets=4, lr=3e-2)
    columns, batch = _batch(rows=32, terminal=True)
    losses = []
    for _ in range(100):
        results = learner.update(batch=batch, timesteps={"num_env_steps_sampled_lifetime": 0})
        losses.append(results["default_policy"]["qf_loss"].peek())
    module = learner.module["default_policy"]
    with torch.no_grad():
        q = module.compute_q_values({"obs": torch.as_tensor(columns["obs"])})["qf_preds"]
    chosen = q.gather(-1, torch.as_tensor(columns["actions"]).unsqueeze(-1)).squeeze(-1)
    assert losses[-1] < 0.05 * losses[0]
    np.testing.assert_allclose(chosen.numpy(), np.repeat(columns["rewards"][:, None], 4, axis=1), atol=0.15)


@pytest.mark.parametrize("kind", ["mlp", "asset_shared"])
def test_factored_dqn_builds_the_branching_module_and_learner(kind):
    from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule

    from policies.factored_q import FactoredQModule

    config = resolve_train_config(
        "dqn", overrides=FACTORED | {"model": {"kind": kind}, "env": {**FACTORED["env"], "observe_regimes": False}}
    )
    algo_config = build_algorithm_config(config)
    spec = algo_config.get_default_rl_module_spec()
    spec.update(algo_config._rl_module_spec)
    assert spec.module_class is FactoredQModule and algo_config.learner_class is FactoredDQNTorchLearner
    model_config = algo_config.model_config
    assert model_config["kind"] == kind and model_config["levels"] == 5
    assert model_config["dueling"] is True and model_config["epsilon"] == [[0, 1.0], [50000, 0.02]]  # configs/dqn.yaml
    assert ("layout" in model_config) == (kind == "asset_shared")
    grid = build_algorithm_config(resolve_train_config("dqn"))
    assert grid.rl_module_spec.module_class is DefaultDQNTorchRLModule
    assert grid.learner_class is not FactoredDQNTorchLearner and "kind" not in grid.model_config


def test_asset_shared_dqn_needs_factored_actions_and_distributional_dqn_is_refused():
    with pytest.raises(ConfigError, match="discrete_actions: factored"):
        resolve_train_config("dqn", overrides={"model": {"kind": "asset_shared"}})
    distributional = resolve_train_config("dqn", overrides=FACTORED | {"hyperparameters": {"num_atoms": 51}})
    with pytest.raises(ConfigError, match="num_atoms"):
        build_algorithm_config(distributional)


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_factored_asset_shared_dqn_trains_exports_and_allocates_valid_weights(ray_local, tiny_csv, tmp_path):
    from backtesting.backtest import evaluation_env
    from policies.factored_q import FactoredQModule
    from policies.load import load_policy
    from tests.support.markets import fast_overrides
    from tests.training.test_train import assert_the_export_acts_as_the_trained_module
    from training.train import train

    overrides = fast_overrides("dqn", tiny_csv, timesteps=3000)
    # One regime model fit (not a BIC search over 1..4 regimes with 4 restarts each: 20 s here); still observed, so
    # the asset-shared layout carries the regime probabilities.
    regimes = {"n_regimes": 2, "restarts": 1}
    overrides["env"] |= {
        "discrete_actions": "factored",
        "factored_levels": 3,
        "validation_paths": 2,
        "regimes": regimes,
    }
    overrides["model"] |= {"kind": "asset_shared"}
    config = resolve_train_config("dqn", overrides=overrides)
    summary = train(config, agent="branching", runs_dir=tmp_path / "runs", models_dir=tmp_path / "models", gate=False)
    assert summary["env_steps"] >= 3000

    policy, meta = load_policy(tmp_path / "models" / "branching")
    assert isinstance(policy.module, FactoredQModule) and policy.module.kind == "asset_shared"
    assert meta.env_config.discrete_actions == "factored"
    assert (meta.action.discrete, meta.action.factored_levels) == ("factored", meta.env_config.factored_levels)
    env = evaluation_env(meta.env_config, "validation")
    observation, _ = env.reset(seed=0)
    for _ in range(20):
        assert policy.actions(observation[None, :]).shape == (1, 4)
        weights = policy.weights(observation)
        assert np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
        observation, *_ = env.step_weights(weights)
    assert_the_export_acts_as_the_trained_module(summary, tmp_path / "models" / "branching")
