"""policies (format, export, load): the models/<agent>/ contract, typed and versioned metadata with errors naming the
file and field, atomic writes, hash verification, the registry; no Ray cluster."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core.errors import DataError
from envs.portfolio_env import PortfolioEnv
from policies.export import update_registry
from policies.format import FORMAT_VERSION, content_hash, read_metadata
from policies.load import load_policy
from tests.support.agents import build_module, export_agent


@pytest.fixture
def env(tiny, small_config):
    return PortfolioEnv(
        small_config.model_copy(update={"continuous_map": "softmax_delta", "softmax_scale": 1.0}), market=tiny.market
    )


export = export_agent


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
    assert meta.format_version == FORMAT_VERSION == 6
    assert meta.module.kind == "mlp" and meta.module.features.asset_layout.size(4) == meta.observation.size
    assert (meta.agent, meta.algorithm) == ("ppo", "ppo")
    assert meta.env_config == env.config and meta.assets == list(env.assets)
    assert meta.observation.size == env.observation_space.shape[0] == len(meta.observation.names)
    assert meta.data.train.first == str(env.market.dates[env.splits["train"].first])
    assert meta.data.fingerprint == env.market.fingerprint()
    assert meta.reproducibility.seed == 3 and meta.reproducibility.versions["ray"] == "2.60.0"
    assert meta.validation == {"mean_daily_log_growth": 0.0004, "sharpe": 1.0}
    assert meta.content_hash == content_hash(agent_dir / "module")
    assert meta.closes_needed == 21  # a 20-day volatility window, then the day itself
    assert sorted(p.name for p in agent_dir.iterdir()) == ["metadata.json", "module"]


def rewrite(agent_dir, change) -> None:
    path = agent_dir / "metadata.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def test_metadata_that_is_not_json_names_the_file_and_where(env, saved_module, tmp_path):
    agent_dir = export(env, saved_module[1], tmp_path / "models")
    (agent_dir / "metadata.json").write_text('{"agent": "ppo", oops}')
    with pytest.raises(
        DataError,
        match=r"metadata\.json: not valid JSON \(Expecting property name enclosed in double "
        r"quotes at line 1, column 18\)",
    ):
        load_policy(agent_dir)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda raw: raw.pop("content_hash"), r"field 'content_hash': Field required"),
        (
            lambda raw: raw["observation"].update(size="many"),
            r"field 'observation\.size': Input should be a valid integer",
        ),
        (
            lambda raw: raw["env_config"].update(cost_bps=-1),
            r"field 'env_config\.cost_bps': Input should be greater than or equal to 0",
        ),
        (lambda raw: raw.update(algorithm="td3"), r"field 'algorithm': Input should be 'dqn', 'sac' or 'ppo'"),
        (
            lambda raw: raw.update(format_version=7),
            r"field 'format_version': Value error, version 7 is not one this code reads "
            r"\(1, 2, 3, 4, 5, 6\); re-export the model",
        ),
        (
            lambda raw: raw["env_config"].update(policy={"base": "buy_and_hold"}),
            r"field 'env_config\.policy\.base': Input should be 'none', 'equal_weight'",
        ),
    ],
)
def test_a_wrong_field_in_metadata_is_named(env, saved_module, tmp_path, change, field):
    agent_dir = export(env, saved_module[1], tmp_path / "models")
    rewrite(agent_dir, change)
    with pytest.raises(DataError, match=rf"{agent_dir / 'metadata.json'}: {field}"):
        read_metadata(agent_dir)


def test_a_model_that_observes_regimes_without_its_regime_model_is_refused(env, saved_module, tmp_path):
    """What serving or evaluating it would need is missing: say so, naming the field, rather than refit or guess."""
    agent_dir = export(env, saved_module[1], tmp_path / "models")
    rewrite(agent_dir, lambda raw: raw["env_config"].update(observe_regimes=True))
    with pytest.raises(DataError, match=r"Value error, env_config\.regimes\.model is missing.*re-export it"):
        load_policy(agent_dir)


def test_a_model_tilting_regime_growth_without_its_regime_model_is_refused_naming_agent_and_base(
    env, saved_module, tmp_path
):
    agent_dir = export(env, saved_module[1], tmp_path / "models")
    rewrite(agent_dir, lambda raw: raw["env_config"].update(policy={"base": "regime_growth"}, continuous_map="softmax"))
    with pytest.raises(DataError, match=r"agent '\w+': its base 'regime_growth' filters with a fitted regime model"):
        load_policy(agent_dir)


def test_version_1_metadata_is_read_with_its_log_growth_under_the_current_name(env, saved_module, tmp_path):
    agent_dir = export(env, saved_module[1], tmp_path / "models")

    def downgrade(raw):
        raw["format_version"] = 1
        raw["validation"] = {"log_growth": 0.0007, "sharpe": 0.5}
        del raw["module_dir"]  # versions before 4 kept the module in module/
        del raw["module"]  # versions before 6: a flat module, its features stated by the observation spec

    rewrite(agent_dir, downgrade)
    meta = read_metadata(agent_dir)
    assert (
        meta.format_version == 6
        and meta.module.kind == "mlp"
        and meta.env_config.policy.base == "none"
        and meta.module_dir == "module"
        and meta.validation == {"mean_daily_log_growth": 0.0007, "sharpe": 0.5}
    )


def test_the_registry_leaves_out_an_agent_whose_metadata_is_corrupt(env, saved_module, tmp_path, caplog):
    models = tmp_path / "models"
    export(env, saved_module[1], models, agent="broken")
    (models / "broken" / "metadata.json").write_text("{")
    export(env, saved_module[1], models, agent="ppo")
    registry = json.loads((models / "registry.json").read_text())
    assert set(registry["agents"]) == {"ppo"} and registry["best"] == "ppo"
    assert "registry: leaving out broken" in caplog.text


def test_loaded_policy_reproduces_the_modules_deterministic_weights(env, saved_module, tmp_path):
    import torch

    module, module_dir = saved_module
    policy, meta = load_policy(export(env, module_dir, tmp_path / "models"))
    observation, _ = env.reset(seed=0)
    with torch.no_grad():
        out = module.forward_inference({"obs": torch.as_tensor(observation[None])})
    action = (
        module.get_inference_action_dist_cls()
        .from_logits(out["action_dist_inputs"])
        .to_deterministic()
        .sample()[0]
        .numpy()
    )
    expected = np.array(env.action_to_weights(action))
    np.testing.assert_allclose(policy.weights(observation), expected, rtol=1e-6)
    assert policy.weights(observation).sum() == pytest.approx(1.0)


def test_policy_on_a_module_in_training_gives_the_inference_action_and_leaves_it_training(env, saved_module):
    import torch

    from policies.policy import Policy

    module, _ = saved_module
    observations = np.stack([env.reset(seed=s)[0] for s in range(5)])
    with torch.no_grad():
        out = module.forward_inference({"obs": torch.as_tensor(observations)})
    expected = (
        module.get_inference_action_dist_cls()
        .from_logits(out["action_dist_inputs"])
        .to_deterministic()
        .sample()
        .numpy()
    )
    module.train()  # as the learner's module is while the validation callback plays it
    np.testing.assert_allclose(Policy(module, env.action_map).actions(observations), expected, rtol=1e-6)
    assert module.training


def test_tampered_module_is_refused(env, saved_module, tmp_path):
    agent_dir = export(env, saved_module[1], tmp_path / "models")
    state = agent_dir / "module" / "module_state.pkl"
    state.write_bytes(state.read_bytes() + b"x")
    with pytest.raises(DataError, match=r"content hash"):
        load_policy(agent_dir)


def test_a_crash_while_exporting_leaves_the_previous_model_and_no_partial_folder(
    env, saved_module, tmp_path, monkeypatch
):
    models = tmp_path / "models"
    first = export(env, saved_module[1], models)
    before = read_metadata(first)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("policies.export.file_hash", crash)
    monkeypatch.setattr("policies.export.content_hash", crash)
    with pytest.raises(OSError, match="disk full"):
        export(env, saved_module[1], models, mean_daily_log_growth=0.9)
    assert read_metadata(models / "ppo") == before
    assert sorted(p.name for p in models.iterdir()) == ["ppo", "registry.json"]


def test_a_folder_without_a_module_is_not_exported(env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"not an RLModule checkpoint"):
        export(env, empty, tmp_path / "models")
    assert not (tmp_path / "models" / "ppo").exists()


def test_registry_names_the_agent_with_the_best_validation_mean_daily_log_growth(env, saved_module, tmp_path):
    models = tmp_path / "models"
    export(env, saved_module[1], models, agent="ppo", mean_daily_log_growth=0.0002)
    export(env, saved_module[1], models, agent="sac", mean_daily_log_growth=0.0005, algo="sac")
    registry = json.loads((models / "registry.json").read_text())
    assert registry["best"] == "sac"
    assert set(registry["agents"]) == {"ppo", "sac"}
    shutil.rmtree(models / "sac")
    assert update_registry(models).best == "ppo"


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
