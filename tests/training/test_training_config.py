"""training.config / algorithms / sweep checks: every bad input fails with a clear message before Ray starts."""

from __future__ import annotations

import pytest
import yaml

from core.errors import ConfigError
from training.algorithms import build_algorithm_config
from training.config import check_training, resolve_train_config
from training.sweep_config import SweepConfig, check_sweep
from training.train import main as train_main


def assert_ray_not_started():
    import ray

    assert not ray.is_initialized()


@pytest.mark.parametrize("algo", ["dqn", "sac", "ppo"])
def test_shipped_algorithm_configs_resolve_and_build(algo):
    config = resolve_train_config(algo)
    algo_config = build_algorithm_config(config)
    assert config.env.split == "train"
    assert config.env.action_mode == ("discrete" if algo == "dqn" else "continuous")
    assert algo_config.env_config["action_mode"] == config.env.action_mode
    assert algo_config.seed == config.seed


@pytest.mark.parametrize("algo", ["dqn", "sac"])
def test_replay_algorithms_use_the_array_replay_unless_told_rllib(algo):
    from ray.rllib.algorithms.dqn import DQN
    from ray.rllib.algorithms.sac import SAC

    from training.replay_algorithms import ArrayReplayDQN, ArrayReplaySAC

    shipped = build_algorithm_config(resolve_train_config(algo)).algo_class
    assert shipped is {"dqn": ArrayReplayDQN, "sac": ArrayReplaySAC}[algo]
    rllib = build_algorithm_config(resolve_train_config(algo, overrides={"replay": "rllib"})).algo_class
    assert rllib is {"dqn": DQN, "sac": SAC}[algo]
    with pytest.raises(ConfigError, match=r"replay"):
        resolve_train_config(algo, overrides={"replay": "ring"})
    ranged = resolve_train_config(algo, overrides={"hyperparameters": {"n_step": [1, 3]}})
    with pytest.raises(ConfigError, match=r"n_step.*whole number"):
        build_algorithm_config(ranged)
    build_algorithm_config(
        resolve_train_config(algo, overrides={"hyperparameters": {"n_step": [1, 3]}, "replay": "rllib"})
    )


def test_unknown_algorithm_is_rejected_by_name(capsys):
    assert train_main(["--algo", "a2c"]) == 2
    assert "unknown algorithm 'a2c'" in capsys.readouterr().err
    assert_ray_not_started()


def test_malformed_yaml_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: ppo\nhyperparameters: [unclosed\n")
    assert train_main(["--algo", "ppo", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not valid YAML" in err
    assert_ray_not_started()


def test_missing_config_and_missing_data_files_are_named(tmp_path, capsys):
    assert train_main(["--algo", "ppo", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such config file" in capsys.readouterr().err
    assert train_main(["--algo", "ppo", "--data", str(tmp_path / "prices.csv")]) == 2
    assert "--data" in capsys.readouterr().err
    assert_ray_not_started()


def test_unknown_hyperparameter_is_rejected_before_ray(tmp_path):
    config = resolve_train_config("ppo", overrides={"hyperparameters": {"learning_rate_typo": 0.1}})
    with pytest.raises(ConfigError, match=r"learning_rate_typo"):
        build_algorithm_config(config)
    assert_ray_not_started()


def test_invalid_field_values_name_the_field():
    with pytest.raises(ConfigError, match=r"timesteps"):
        resolve_train_config("sac", overrides={"timesteps": -5})
    with pytest.raises(ConfigError, match=r"env\.cost_bps"):
        resolve_train_config("sac", overrides={"env": {"cost_bps": -1}})


def test_dqn_with_continuous_actions_is_rejected():
    with pytest.raises(ConfigError, match=r"DQN needs 'discrete' actions"):
        resolve_train_config("dqn", overrides={"env": {"action_mode": "continuous"}})


def test_training_on_the_test_split_is_refused():
    with pytest.raises(ConfigError, match=r"train split"):
        resolve_train_config("ppo", overrides={"env": {"split": "test"}})


def test_gpu_config_on_a_machine_without_gpus_fails_before_ray():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    config = resolve_train_config("ppo", overrides={"resources": {"num_gpus_per_learner": 1}})
    with pytest.raises(ConfigError, match=r"num_gpus_per_learner.*no(ne)?"):
        check_training(config)
    assert_ray_not_started()


def test_gpu_sweep_profile_parses_and_fails_cleanly_without_gpus(repo_root):
    import torch

    sweep = SweepConfig.model_validate(yaml.safe_load((repo_root / "configs" / "sweep_gpu.yaml").read_text()))
    assert sweep.resources.num_gpus_per_learner >= 1
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"GPU"):
            check_sweep(sweep, ["ppo"], None)
    assert_ray_not_started()


@pytest.mark.parametrize(
    "domain, message",
    [
        ({"loguniform": [-1.0, 0.1]}, r"loguniform: bounds must be positive"),
        ({"uniform": [0.5, 0.1]}, r"lower bound"),
        ({"choice": []}, r"at least one value"),
        ({"choice": [1], "uniform": [0, 1]}, r"exactly one"),
    ],
)
def test_search_spaces_that_cannot_be_sampled_are_rejected(domain, message):
    raw = {"algos": {"ppo": {"timesteps": 1000, "search_space": {"lr": domain}}}}
    with pytest.raises(Exception, match=message):
        SweepConfig.model_validate(raw)


def test_sampled_configuration_that_rllib_would_reject_fails_in_preflight():
    sweep = SweepConfig.model_validate(
        {"algos": {"ppo": {"timesteps": 1000, "search_space": {"not_a_param": {"choice": [1, 2]}}}}}
    )
    with pytest.raises(ConfigError, match=r"search_space\.ppo.*not_a_param"):
        check_sweep(sweep, ["ppo"], None)
    sweep = SweepConfig.model_validate(
        {"algos": {"ppo": {"timesteps": 1000, "search_space": {"env.cost_bps": {"choice": [-5]}}}}}
    )
    with pytest.raises(ConfigError, match=r"search_space\.ppo.*cost_bps"):
        check_sweep(sweep, ["ppo"], None)
    assert_ray_not_started()


def test_sweep_cli_rejects_unknown_algorithms_and_bad_yaml(tmp_path, capsys):
    from training.sweep import main as sweep_main

    assert sweep_main(["--algos", "ppo,td3"]) == 2
    assert "td3" in capsys.readouterr().err
    bad = tmp_path / "sweep.yaml"
    bad.write_text("algos: {ppo: {timesteps: 10, search_space: {lr: {loguniform: [0, 1]}}}}\n")
    assert sweep_main(["--config", str(bad)]) == 2
    assert "loguniform" in capsys.readouterr().err
    assert_ray_not_started()


def test_sweep_resources_override_only_what_they_set():
    from training.sweep_config import trial_train_config

    sweep = SweepConfig.model_validate(
        {"resources": {"num_env_runners": 2}, "algos": {"sac": {"timesteps": 1000}, "ppo": {"timesteps": 1000}}}
    )
    sac = trial_train_config(sweep, "sac", {})
    assert sac.resources.num_env_runners == 2
    # SAC's own envs and rollout fragment (128 env steps per sample call) must survive: "auto" made it ~20x slower.
    own = resolve_train_config("sac").resources
    assert (sac.resources.num_envs_per_env_runner, sac.resources.rollout_fragment_length) == (32, 4)
    assert (own.num_envs_per_env_runner, own.rollout_fragment_length) == (32, 4)


def test_array_replay_refuses_what_it_cannot_do_before_ray():
    small = resolve_train_config("dqn", overrides={"hyperparameters": {"replay_buffer_config": {"capacity": 100}}})
    with pytest.raises(ConfigError, match=r"capacity: 100 is less than one train batch"):
        build_algorithm_config(small)
    stored = resolve_train_config("sac", overrides={"hyperparameters": {"store_buffer_in_checkpoints": True}})
    with pytest.raises(ConfigError, match=r"store_buffer_in_checkpoints"):
        build_algorithm_config(stored)
    assert_ray_not_started()


def test_sweeps_planned_before_the_replay_option_resume_with_rllibs_buffers(tmp_path):
    """Tune restores only into the trainable class an experiment started with (DQN, not ArrayReplayDQN)."""
    from training.sweep_state import SweepPlan

    base = resolve_train_config("dqn").model_dump(mode="json")
    del base["replay"]
    plan = {
        "name": "old",
        "created_at": "2026-11-30T00:00:00",
        "config_file": "configs/sweep.yaml",
        "data_label": "synthetic",
        "algos": ["dqn"],
        "sweep": yaml.safe_load(open("configs/sweep.yaml")),
        "bases": {"dqn": base},
    }
    assert SweepPlan.model_validate(plan).bases["dqn"].replay == "rllib"
    plan["bases"]["dqn"]["replay"] = "array"
    assert SweepPlan.model_validate(plan).bases["dqn"].replay == "array"


def test_sampling_assets_needs_an_asset_shared_model():
    overrides = {"env": {"universe": {"sample_assets": 2}, "policy": {"base": "none"}}}
    with pytest.raises(ConfigError, match=r"env\.universe\.sample_assets: 2 .*model\.kind: asset_shared.*'mlp'"):
        resolve_train_config("ppo", overrides=overrides)
    shared = resolve_train_config("ppo", overrides=overrides | {"model": {"kind": "asset_shared", "squash": False}})
    assert shared.env.universe.sample_assets == 2


def test_sampling_with_a_base_decided_over_the_whole_universe_is_refused():
    overrides = {"env": {"universe": {"sample_assets": 2}}, "model": {"kind": "asset_shared"}}
    with pytest.raises(ConfigError, match=r"universe\.sample_assets: the residual base 'regime_growth'"):
        resolve_train_config("ppo", overrides=overrides)  # configs/ppo.yaml tilts regime_growth


def test_sampling_more_assets_than_the_data_has_fails_before_ray_naming_the_file(tmp_path, tiny_csv, capsys):
    config = tmp_path / "sampled.yaml"
    config.write_text(
        yaml.safe_dump(
            {"model": {"kind": "asset_shared"}, "env": {"universe": {"sample_assets": 5}, "observe_regimes": False}}
        )
    )
    assert train_main(["--algo", "ppo", "--config", str(config), "--data", str(tiny_csv)]) == 2
    err = capsys.readouterr().err
    assert f"universe.sample_assets: 5 is more than the 4 assets of {tiny_csv.resolve()}" in err, err
    assert_ray_not_started()


def test_validation_of_a_sampled_run_plays_the_whole_universe():
    from training.validation import validation_envs

    env = {
        "data": {"synthetic_assets": 6, "synthetic_years": 6},
        "universe": {"sample_assets": 2},
        "policy": {"base": "none"},
        "observe_regimes": False,
        "validation_paths": 3,
    }
    config = resolve_train_config("ppo", overrides={"env": env, "model": {"kind": "asset_shared"}})
    training = check_training(config)  # the train split: 2 of the 6 assets per episode, on fresh law paths
    assert training.action_space.shape == (2,) and training.trains_on_law
    envs = validation_envs(config.env.model_dump(mode="json"))
    assert len(envs) == 3 and all(e.action_map.n_assets == 6 and len(e.episode_assets) == 6 for e in envs)
    assert_ray_not_started()
