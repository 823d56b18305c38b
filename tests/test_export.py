"""training.export: the models/<agent>/ contract, atomic writes, hash verification, the registry; no Ray cluster."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from envs.errors import DataError
from envs.portfolio_env import PortfolioEnv
from training.export import content_hash, export_policy, load_policy, read_metadata, update_registry


def build_module(env: PortfolioEnv, algo: str):
    """A freshly initialised RLlib module for ``env`` (what training would produce, before learning)."""
    from training.algorithms import _algorithm_config_class

    config = _algorithm_config_class(algo)().rl_module(model_config={"fcnet_hiddens": [16]})
    return config.get_rl_module_spec(env=env, inference_only=True).build()


@pytest.fixture
def env(tiny, small_config):
    return PortfolioEnv(small_config.model_copy(update={"continuous_map": "softmax_delta", "softmax_scale": 1.0}), market=tiny.market)


def export(env, module_dir, models_dir, agent="ppo", log_growth=0.0004, algo="ppo"):
    return export_policy(
        module_dir,
        models_dir,
        agent=agent,
        algorithm=algo,
        env_config=env.config,
        market=env.market,
        splits=env.splits,
        validation={"log_growth": log_growth, "sharpe": 1.0},
        source_checkpoint="runs/x/checkpoint",
        seed=3,
        resolved_config={"algo": algo},
    )


@pytest.fixture
def saved_module(env, tmp_path):
    module = build_module(env, "ppo")
    path = tmp_path / "best_module"
    module.save_to_path(str(path))
    return module, path


def test_export_writes_module_and_complete_metadata(env, saved_module, tmp_path):
    _, module_dir = saved_module
    agent_dir = export(env, module_dir, tmp_path / "models")
    meta = read_metadata(agent_dir)
    for key in ("agent", "algorithm", "env_config", "observation", "assets", "data", "validation", "created_at",
                "source_checkpoint", "content_hash", "reproducibility"):
        assert key in meta, key
    assert meta["assets"] == list(env.assets)
    assert meta["observation"]["size"] == env.observation_space.shape[0]
    assert len(meta["observation"]["names"]) == meta["observation"]["size"]
    assert meta["data"]["train"]["first"] == str(env.market.dates[env.splits["train"].first])
    assert meta["data"]["fingerprint"] == env.market.fingerprint()
    assert set(meta["reproducibility"]) >= {"seed", "resolved_config", "git_commit", "versions"}
    assert meta["content_hash"] == content_hash(agent_dir / "module")
    assert sorted(p.name for p in agent_dir.iterdir()) == ["metadata.json", "module"]


def test_loaded_policy_reproduces_the_modules_deterministic_weights(env, saved_module, tmp_path):
    import torch

    module, module_dir = saved_module
    policy, meta = load_policy(export(env, module_dir, tmp_path / "models"))
    observation, _ = env.reset(seed=0)
    with torch.no_grad():
        out = module.forward_inference({"obs": torch.as_tensor(observation[None])})
    action = module.get_inference_action_dist_cls().from_logits(out["action_dist_inputs"]).to_deterministic().sample()[0].numpy()
    expected = np.array(env.action_to_weights(action))
    np.testing.assert_allclose(policy.weights(observation), expected, rtol=1e-6)
    assert policy.weights(observation).sum() == pytest.approx(1.0)


def test_policy_on_a_module_in_training_gives_the_inference_action_and_leaves_it_training(env, saved_module):
    import torch

    from training.policy import Policy

    module, _ = saved_module
    observations = np.stack([env.reset(seed=s)[0] for s in range(5)])
    with torch.no_grad():
        out = module.forward_inference({"obs": torch.as_tensor(observations)})
    expected = module.get_inference_action_dist_cls().from_logits(out["action_dist_inputs"]).to_deterministic().sample().numpy()
    module.train()  # as the learner's module is while the validation callback plays it
    np.testing.assert_allclose(Policy(module, env.action_map).actions(observations), expected, rtol=1e-6)
    assert module.training


def test_tampered_module_is_refused(env, saved_module, tmp_path):
    agent_dir = export(env, saved_module[1], tmp_path / "models")
    state = agent_dir / "module" / "module_state.pkl"
    state.write_bytes(state.read_bytes() + b"x")
    with pytest.raises(DataError, match=r"content hash"):
        load_policy(agent_dir)


def test_a_crash_while_exporting_leaves_the_previous_model_and_no_partial_folder(env, saved_module, tmp_path, monkeypatch):
    models = tmp_path / "models"
    first = export(env, saved_module[1], models)
    before = read_metadata(first)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("training.export.file_hash", crash)
    monkeypatch.setattr("training.export.content_hash", crash)
    with pytest.raises(OSError, match="disk full"):
        export(env, saved_module[1], models, log_growth=0.9)
    assert read_metadata(models / "ppo") == before
    assert sorted(p.name for p in models.iterdir()) == ["ppo", "registry.json"]


def test_a_folder_without_a_module_is_not_exported(env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"not an RLModule checkpoint"):
        export(env, empty, tmp_path / "models")
    assert not (tmp_path / "models" / "ppo").exists()


def test_registry_names_the_agent_with_the_best_validation_log_growth(env, saved_module, tmp_path):
    models = tmp_path / "models"
    export(env, saved_module[1], models, agent="ppo", log_growth=0.0002)
    export(env, saved_module[1], models, agent="sac", log_growth=0.0005, algo="sac")
    registry = json.loads((models / "registry.json").read_text())
    assert registry["best"] == "sac"
    assert set(registry["agents"]) == {"ppo", "sac"}
    shutil.rmtree(models / "sac")
    assert update_registry(models)["best"] == "ppo"


def test_loading_a_folder_that_is_not_a_model_names_it(tmp_path):
    with pytest.raises(DataError, match=r"not an exported policy"):
        load_policy(tmp_path)


def test_discrete_policy_maps_grid_actions_to_weights(tiny, small_config, tmp_path):
    env = PortfolioEnv(small_config.model_copy(update={"action_mode": "discrete"}), market=tiny.market)
    module = build_module(env, "dqn")
    module.save_to_path(str(tmp_path / "m"))
    policy, _ = load_policy(export(env, tmp_path / "m", tmp_path / "models", agent="dqn", algo="dqn"))
    observation, _ = env.reset(seed=0)
    weights = policy.weights(observation)
    assert any(np.allclose(weights, row) for row in env.grid)
