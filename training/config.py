"""Training configuration: one YAML per algorithm (``configs/{dqn,sac,ppo}.yaml``) over the shared env YAML.

Resolution order for the env config: ``configs/env.yaml`` (or ``env_config_path``) < the algorithm YAML's ``env``
section < command-line overrides (``--data``). The result is validated once into ``TrainConfig``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from backtesting.backtest import evaluation_env
from core.config import CONFIG_DIR, FrozenConfig, load_yaml, parse_config
from core.errors import ConfigError
from envs.config import ENV_YAML, EnvConfig
from envs.portfolio_env import PortfolioEnv
from envs.regimes import carry_regime_model
from training.gate import GateConfig, check_gate_data

ALGORITHMS = ("dqn", "sac", "ppo")
VALIDATION_METRIC = "validation/mean_daily_log_growth"  # mean daily log growth net of costs on the validation split


class ModelConfig(FrozenConfig):
    hidden: tuple[int, ...] = (64, 64)
    activation: Literal["relu", "tanh", "silu"] = "tanh"
    squash: bool = Field(
        default=False, description="PPO, continuous actions: tanh-squashed Gaussian (policies.modules)"
    )
    kind: Literal["mlp", "asset_shared"] = Field(
        default="mlp",
        description="mlp: RLlib's fully connected networks over the whole observation (one input per asset slot); "
        "asset_shared: one network shared by every asset, permutation-equivariant, that runs on any number of assets "
        "(policies.shared_ppo, policies.shared_sac, and policies.factored_q for DQN with discrete_actions: factored; "
        "hidden are its per-asset widths)",
    )


class ResourcesConfig(FrozenConfig):
    """Where the work runs. Locally: no remote env runners, learner in the driver process, no GPU."""

    num_env_runners: int = Field(default=0, ge=0)
    num_envs_per_env_runner: int = Field(default=1, ge=1)
    num_cpus_per_env_runner: float = Field(default=1, gt=0)
    rollout_fragment_length: int | Literal["auto"] = "auto"
    num_learners: int = Field(default=0, ge=0)
    num_gpus_per_learner: float = Field(default=0, ge=0)
    num_cpus_per_learner: float | Literal["auto"] = "auto"


class TrainConfig(FrozenConfig):
    algo: Literal["dqn", "sac", "ppo"]
    seed: int = 0
    timesteps: int | None = Field(
        default=100_000, ge=1, description="env steps for a single run; null: as many as time_budget_s allows"
    )
    time_budget_s: float | None = Field(
        default=None, gt=0, description="wall-clock seconds of training, then checkpoint and export (None: no limit)"
    )
    env: EnvConfig
    model: ModelConfig = ModelConfig()
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="AlgorithmConfig.training(**...)")
    replay: Literal["array", "rllib"] = Field(
        default="array",
        description="DQN and SAC: 'array' replays n-step transitions from numpy arrays (training.replay, uniform); "
        "'rllib' uses RLlib's episode buffer named in hyperparameters.replay_buffer_config",
    )
    resources: ResourcesConfig = ResourcesConfig()
    gate: GateConfig = Field(default=GateConfig(), description="the promotion gate run after the export")
    checkpoint_every_iterations: int = Field(default=10, ge=1)
    validate_every_steps: int = Field(
        default=0,
        ge=0,
        description="validate (and maybe keep the module) once this many env steps passed since the last validation; "
        "0: after every iteration",
    )
    selection: Literal["best", "within_one_se"] = Field(
        default="best",
        description="which validated module to keep and export: 'best' the highest validation mean daily log growth; "
        "'within_one_se' the newest within one standard error (across validation paths) of the best, so that a "
        "lucky early module does not beat a later one validation cannot tell from it",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> TrainConfig:
        if self.timesteps is None and self.time_budget_s is None:
            raise ValueError("timesteps: null needs a time_budget_s, or training would never stop")
        return self

    @field_validator("env")
    @classmethod
    def _training_split(cls, env: EnvConfig) -> EnvConfig:
        if env.split != "train":
            raise ValueError(f"training must use the train split, got split '{env.split}'")
        return env

    @model_validator(mode="after")
    def _action_mode_fits_algo(self) -> TrainConfig:
        wanted = "discrete" if self.algo == "dqn" else "continuous"
        if self.env.action_mode != wanted:
            raise ValueError(
                f"env.action_mode: {self.algo.upper()} needs '{wanted}' actions, got '{self.env.action_mode}'"
            )
        if self.model.squash and self.algo != "ppo":
            raise ValueError(f"model.squash: only PPO takes it ({self.algo.upper()} has its own action distribution)")
        return self

    @model_validator(mode="after")
    def _asset_shared_dqn_is_factored(self) -> TrainConfig:
        if self.algo == "dqn" and self.model.kind == "asset_shared" and self.env.discrete_actions != "factored":
            raise ValueError(
                "model.kind: asset_shared DQN scores each asset's own level, so it needs env.discrete_actions: "
                "factored (a grid index is a choice over every asset at once, not per asset)"
            )
        return self

    @model_validator(mode="after")
    def _sampled_universe_needs_a_shared_model(self) -> TrainConfig:
        sample = self.env.universe.sample_assets
        if sample is not None and self.model.kind != "asset_shared":
            raise ValueError(
                f"env.universe.sample_assets: {sample} trains on {sample} assets per episode and validates on all of "
                f"the data's, which only a network shared by every asset can do; set model.kind: asset_shared (it is "
                f"'{self.model.kind}', a flat network sized for one universe)"
            )
        return self


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_train_config(
    algo: str, config_path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Load ``configs/<algo>.yaml`` (or ``config_path``), merge the shared env YAML and ``overrides``, validate. The
    YAML's ``policy`` section (the residual base, ``envs.config.PolicyConfig``) becomes ``env.policy``.

    :raises ConfigError: unknown algorithm, missing or malformed YAML, or any invalid field (named).
    """
    if algo not in ALGORITHMS:
        raise ConfigError(f"--algo: unknown algorithm '{algo}'; choose from {', '.join(ALGORITHMS)}")
    path = Path(config_path) if config_path else CONFIG_DIR / f"{algo}.yaml"
    raw = load_yaml(path)
    if raw.get("algo", algo) != algo:
        raise ConfigError(f"{path}: algo is '{raw['algo']}' but --algo is '{algo}'")
    env_path = raw.pop("env_config_path", None)
    env_path = (path.parent / env_path) if env_path else ENV_YAML
    env = _deep_merge(load_yaml(env_path), raw.get("env") or {})
    if "policy" in raw:  # the algorithm's residual base (a section of its own in the YAML) is part of its env
        env = _deep_merge(env, {"policy": raw.pop("policy") or {}})
    merged = _deep_merge({**raw, "algo": algo, "env": env}, overrides or {})
    return parse_config(TrainConfig, merged, where=str(path))


def env_overrides(data: str | None = None) -> dict[str, Any]:
    """Command-line overrides shared by train and sweep."""
    overrides: dict[str, Any] = {}
    if data is not None:
        if not Path(data).is_file():
            raise ConfigError(f"--data: {data}: no such file")
        overrides["env"] = {"data": {"path": str(Path(data).resolve())}}
    return overrides


def check_training(config: TrainConfig, *, require_devices: bool = True) -> PortfolioEnv:
    """Check data, env and resources before any Ray work; returns a train-split env (for its market and splits).

    :param require_devices: refuse GPUs this machine lacks (off for a dry run that only plans the placement)."""
    if require_devices and config.resources.num_gpus_per_learner > 0:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"resources.num_gpus_per_learner: {config.resources.num_gpus_per_learner} GPU(s) requested but this "
                "machine has none (torch.cuda.is_available() is False); use a CPU config such as configs/sweep.yaml"
            )
    env = PortfolioEnv(config.env)
    evaluation_env(config.env, "validation")  # what the validation callback will build: fail here, not in a trial
    check_gate_data(config.env, config.gate, env.splits["validation"].n_days)
    return env


def with_regime_model(config: TrainConfig, env: PortfolioEnv) -> TrainConfig:
    """``config`` carrying the regime model its env resolved (fitted on the train split, or the true law), so every
    process of the run, its validation and the exported model filter with that one model instead of each fitting."""
    return config.model_copy(update={"env": carry_regime_model(config.env, env.regime_model)})
