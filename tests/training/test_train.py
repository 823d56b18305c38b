"""training.train on a real local Ray: a short run checkpoints, validates, exports; same seed, same numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backtesting.backtest import evaluation_env
from policies.load import load_policy
from tests.support.markets import fast_overrides
from training.config import resolve_train_config
from training.train import train
from training.validation import kept_module


def assert_the_export_acts_as_the_trained_module(summary: dict, agent_dir, n: int = 60) -> None:
    """On ``n`` real observations of the validation split (books held at random), the exported policy loaded
    without Ray takes exactly the actions of the module training kept, loaded by RLlib and run through its own
    ``forward_inference`` and deterministic action, and maps them to the weights the env would hold."""
    from pathlib import Path

    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule

    policy, meta = load_policy(agent_dir)
    env = evaluation_env(meta.env_config, "validation")
    observation, _ = env.reset(seed=0)
    rng, observations = np.random.default_rng(0), []
    for _ in range(n):
        observations.append(observation)
        observation, *_ = env.step_weights(rng.dirichlet(np.ones(len(meta.assets))))
    observations = np.stack(observations).astype(np.float32)

    trained = RLModule.from_checkpoint(str(Path(kept_module(Path(summary["checkpoint"]).parent).local_path).resolve()))
    with torch.no_grad():
        out = trained.forward_inference({"obs": torch.from_numpy(observations)})
    if "actions" in out:  # DQN: the greedy grid index
        expected = out["actions"].numpy()
    else:  # PPO and SAC: the distribution's deterministic action
        dist = trained.get_inference_action_dist_cls().from_logits(out["action_dist_inputs"])
        expected = dist.to_deterministic().sample().numpy()
    actions = policy.actions(observations)
    if meta.algorithm == "dqn":
        np.testing.assert_array_equal(actions, expected)
    else:
        np.testing.assert_allclose(actions, expected, rtol=1e-6, atol=1e-7)
    assert len(np.unique(np.round(actions, 6), axis=0)) > 1, "the same action on every observation"
    n_assets = len(meta.assets)
    held = observations[:, -n_assets:].astype(np.float64)
    bases = observations[:, -2 * n_assets : -n_assets].astype(np.float64)  # the residual base, observed
    weights = policy.weights_batch(observations)
    for row, action, book, base in zip(weights, expected, held, bases):
        base = base / base.sum() if env.base is not None else None
        np.testing.assert_allclose(row, env.action_map(action, book, base), rtol=1e-6, atol=1e-9)


pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ppo_run(ray_local, tiny_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo")
    config = resolve_train_config("ppo", overrides=fast_overrides("ppo", tiny_csv, timesteps=1000, seed=11))
    summary = train(config, agent="ppo", runs_dir=root / "runs", models_dir=root / "models")
    return config, summary, root


def test_short_run_exports_a_policy_that_loads_and_allocates(ppo_run):
    config, summary, root = ppo_run
    agent_dir = root / "models" / "ppo"
    policy, meta = load_policy(agent_dir)
    assert meta.algorithm == "ppo" and meta.assets == ["STOCK", "BOND", "GOLD", "CRYPTO"]
    assert meta.validation["mean_daily_log_growth"] == pytest.approx(
        summary["best_validation"]["mean_daily_log_growth"]
    )
    assert meta.reproducibility.seed == 11
    assert meta.data.file_sha256 is not None
    assert_the_export_acts_as_the_trained_module(summary, agent_dir)
    assert json.loads((root / "models" / "registry.json").read_text())["best"] == "ppo"


def test_run_keeps_a_resumable_algorithm_checkpoint(ppo_run):
    _, summary, _ = ppo_run
    from pathlib import Path

    checkpoint = Path(summary["checkpoint"])
    assert (checkpoint / "learner_group" / "learner" / "rl_module" / "default_policy").is_dir()
    assert summary["env_steps"] >= 1000


def test_exported_validation_metrics_are_what_the_exported_policy_earns_on_validation(ppo_run):
    """The metadata is not a copy of a training-time number: replaying the export reproduces it."""
    from backtesting.backtest import PolicyStrategy, run_backtest
    from training.validation import validation_envs

    config, _, root = ppo_run
    policy, meta = load_policy(root / "models" / "ppo")
    envs = validation_envs(meta.env_config)  # the configs train on the synthetic law: its validation paths
    assert len(envs) == meta.env_config.validation_paths > 1
    growth = [run_backtest(PolicyStrategy("ppo", policy.weights), env).log_growth.mean() for env in envs]
    assert np.mean(growth) == pytest.approx(meta.validation["mean_daily_log_growth"], rel=1e-6)


def test_same_seed_same_data_same_config_gives_the_same_validation_metrics(ppo_run, tiny_csv, tmp_path):
    config, summary, _ = ppo_run
    again = train(config, agent="ppo", runs_dir=tmp_path / "runs", models_dir=tmp_path / "models")
    assert again["best_validation"] == summary["best_validation"]
    first, _ = load_policy(ppo_run[2] / "models" / "ppo")
    second, _ = load_policy(tmp_path / "models" / "ppo")
    for (name, a), (_, b) in zip(first.module.state_dict().items(), second.module.state_dict().items()):
        assert (a == b).all(), name


@pytest.mark.parametrize("algo", ["dqn", "sac"])
def test_replay_algorithms_train_and_export(ray_local, tiny_csv, tmp_path, algo):
    config = resolve_train_config(algo, overrides=fast_overrides(algo, tiny_csv, timesteps=600))
    summary = train(config, agent=algo, runs_dir=tmp_path / "runs", models_dir=tmp_path / "models")
    policy, meta = load_policy(tmp_path / "models" / algo)
    assert meta.algorithm == algo and summary["env_steps"] >= 600
    assert_the_export_acts_as_the_trained_module(summary, tmp_path / "models" / algo)


def test_a_time_budget_alone_stops_training_and_exports(ray_local, tiny_csv, tmp_path):
    """``--time-budget-s`` without ``--timesteps``: trains some iterations, stops near the budget, exports."""
    config = resolve_train_config("ppo", overrides=fast_overrides("ppo", tiny_csv, timesteps=None, time_budget_s=8))
    summary = train(config, agent="ppo_budget", runs_dir=tmp_path / "runs", models_dir=tmp_path / "models")
    assert summary["env_steps"] >= 500  # at least one iteration
    assert summary["seconds"] < 8 + 30  # stopped by the budget, not by a step count (there is none)
    _, meta = load_policy(tmp_path / "models" / "ppo_budget")
    assert meta.training.env_steps == summary["env_steps"]


def test_no_step_limit_and_no_budget_is_a_config_error(tiny_csv):
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="timesteps: null needs a time_budget_s"):
        resolve_train_config("ppo", overrides=fast_overrides("ppo", tiny_csv, timesteps=None))
