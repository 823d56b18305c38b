"""RLlib ``AlgorithmConfig`` builders: the only place algorithm configs are made (new API stack, torch).

One small function per algorithm adds what is specific to it; ``build_algorithm_config`` does the shared part
(env, resources, model, seed, validation callback). Unknown hyperparameters raise ``ConfigError`` before Ray starts.
"""

from __future__ import annotations

import inspect
from typing import Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from core.errors import ConfigError
from envs import ENV_ID
from training.config import TrainConfig


def algorithm_config_class(algo: str, replay: str = "array") -> type[AlgorithmConfig]:
    """RLlib's config class for ``algo``; DQN and SAC replay from ``training.replay`` unless ``replay='rllib'``."""
    if algo == "ppo":
        from ray.rllib.algorithms.ppo import PPOConfig

        return PPOConfig
    if replay not in ("array", "rllib"):
        raise ConfigError(f"replay: expected 'array' or 'rllib', got '{replay}'")
    if algo == "sac":
        if replay == "rllib":
            from ray.rllib.algorithms.sac import SACConfig

            return SACConfig
        from training.replay_algorithms import ArrayReplaySACConfig

        return ArrayReplaySACConfig
    if algo == "dqn":
        if replay == "rllib":
            from ray.rllib.algorithms.dqn import DQNConfig

            return DQNConfig
        from training.replay_algorithms import ArrayReplayDQNConfig

        return ArrayReplayDQNConfig
    raise ConfigError(f"unknown algorithm '{algo}'")


def _check_hyperparameters(config_class: type[AlgorithmConfig], hyperparameters: dict[str, Any]) -> None:
    accepted: set[str] = set()
    for klass in config_class.__mro__:
        training = klass.__dict__.get("training")
        if training is not None:
            accepted |= set(inspect.signature(training).parameters) - {"self", "kwargs"}
    unknown = sorted(set(hyperparameters) - accepted)
    if unknown:
        raise ConfigError(f"hyperparameters: {unknown} not accepted by {config_class.__name__}.training()")


def asset_shared_module_spec(config: TrainConfig) -> RLModuleSpec:
    """PPO's or SAC's asset-shared module (``model.kind: asset_shared``) for ``config``'s observation layout.

    :raises ConfigError: the env observes regimes but carries no regime model to count them
        (``training.config.with_regime_model`` fills it in)."""
    from envs.layout import AssetLayout
    from policies.asset_heads import SharedModelConfig

    env = config.env
    n_regimes = 0
    if env.observe_regimes:
        if env.regimes.model is None:
            raise ConfigError(
                "model.kind: asset_shared sizes its layout by the regime model's number of regimes, but "
                "env.regimes.model is empty (training.config.with_regime_model carries the fitted one)"
            )
        n_regimes = len(env.regimes.model.transition)
    shared = SharedModelConfig(
        layout=AssetLayout.of_env(env, n_regimes),
        hidden=config.model.hidden,
        activation=config.model.activation,
        squash=config.model.squash,
    )
    if config.algo == "ppo":
        from policies.shared_ppo import AssetSharedPPOModule as module_class
    else:
        from policies.shared_sac import AssetSharedSACModule as module_class
    return RLModuleSpec(module_class=module_class, model_config=shared.to_model_config())


def build_algorithm_config(
    config: TrainConfig, *, run_dir: str | None = None, per_trial: bool = False
) -> AlgorithmConfig:
    """The RLlib config for ``config`` (not built into an algorithm; no Ray needed).

    :param run_dir: where the validation callback keeps the best module; default the algorithm's log dir.
    :param per_trial: Tune sweeps: one sub-folder of ``run_dir`` per trial.
    """
    from training.validation import ValidationCallback, with_run_dir

    config_class = algorithm_config_class(config.algo, config.replay)
    _check_hyperparameters(config_class, config.hyperparameters)
    res = config.resources
    algo_config = (
        config_class()
        # Continuous actions live in Box(-1, 1), the range RLlib normalises to, and the env's action map clips them:
        # RLlib's per-env unsquash-and-clip connector was the identity, at a third of the sampling time (profiled).
        .environment(ENV_ID, env_config=config.env.model_dump(mode="json"), normalize_actions=False, clip_actions=False)
        .framework("torch")
        .env_runners(
            num_env_runners=res.num_env_runners,
            num_envs_per_env_runner=res.num_envs_per_env_runner,
            num_cpus_per_env_runner=res.num_cpus_per_env_runner,
            rollout_fragment_length=res.rollout_fragment_length,
            # RLlib asks the env creator for all its envs at once: one PortfolioVectorEnv (envs.vector_env) steps
            # them in a few numpy operations instead of gymnasium's SyncVectorEnv stepping them one by one.
            gym_env_vectorize_mode="vector_entry_point",
        )
        .learners(
            num_learners=res.num_learners,
            num_gpus_per_learner=res.num_gpus_per_learner,
            num_cpus_per_learner=res.num_cpus_per_learner,
        )
        .rl_module(
            model_config={"fcnet_hiddens": list(config.model.hidden), "fcnet_activation": config.model.activation}
        )
        .callbacks(
            with_run_dir(
                run_dir, per_trial=per_trial, every_steps=config.validate_every_steps, selection=config.selection
            )
            if run_dir
            else ValidationCallback
        )
        .debugging(seed=config.seed, log_level="WARN")
        .reporting(min_sample_timesteps_per_iteration=1000 if config.algo in ("dqn", "sac") else 0)
    )
    if config.model.kind == "asset_shared" and config.algo in ("ppo", "sac"):
        algo_config = algo_config.rl_module(rl_module_spec=asset_shared_module_spec(config))
    elif config.model.squash:
        from policies.modules import SquashedPPOModule

        algo_config = algo_config.rl_module(rl_module_spec=RLModuleSpec(module_class=SquashedPPOModule))
    if config.algo == "dqn" and config.env.discrete_actions == "factored":
        from training.factored_dqn import factored_dqn_config  # branching DQN: (B, K, L) Q-values, K * L outputs

        algo_config = factored_dqn_config(algo_config, config)
    if config.algo in ("dqn", "sac"):
        # Replay-based learners report every 1,000 env steps; PPO reports every train batch.
        algo_config = algo_config.reporting(min_time_s_per_iteration=0)
    try:
        algo_config = algo_config.training(**config.hyperparameters)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"hyperparameters: {exc}") from None
    if config.algo in ("dqn", "sac") and config.replay == "array":
        from training.replay_algorithms import check_array_replay

        check_array_replay(algo_config)
    return algo_config
