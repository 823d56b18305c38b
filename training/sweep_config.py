"""The sweep YAML (``configs/sweep.yaml``) as typed config, and the checks that run before Ray starts.

One ``SweepConfig`` per file: budgets per algorithm, search spaces (``Domain``), ASHA, MLflow and per-trial
resources. ``check_sweep`` resolves every algorithm's base ``TrainConfig`` and samples each search space a few times,
so a bad space or a value RLlib would reject fails in seconds, before any trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from core.config import FrozenConfig, parse_config
from core.errors import ConfigError
from training.config import (
    ResourcesConfig,
    TrainConfig,
    check_training,
    env_overrides,
    resolve_train_config,
    with_regime_model,
)
from training.gate import GateConfig


class Domain(FrozenConfig):
    """One search dimension; exactly one field set. ``grid`` values are all tried (with every random sample)."""

    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    grid: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Domain:
        kinds = [k for k in ("choice", "uniform", "loguniform", "randint", "grid") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of choice, uniform, loguniform, randint, grid (got {kinds or 'none'})")
        if self.choice is not None and not self.choice or self.grid is not None and not self.grid:
            raise ValueError("choice/grid needs at least one value")
        for kind in ("uniform", "loguniform", "randint"):
            bounds = getattr(self, kind)
            if bounds is not None and not bounds[0] < bounds[1]:
                raise ValueError(f"{kind}: lower bound {bounds[0]} must be below upper bound {bounds[1]}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform: bounds must be positive, got {self.loguniform}")
        return self

    def to_tune(self):
        from ray import tune

        if self.choice is not None:
            return tune.choice(self.choice)
        if self.grid is not None:
            return tune.grid_search(self.grid)
        if self.uniform is not None:
            return tune.uniform(*self.uniform)
        if self.loguniform is not None:
            return tune.loguniform(*self.loguniform)
        return tune.randint(*self.randint)


class AlgoSweep(FrozenConfig):
    config: str | None = Field(default=None, description="algorithm YAML; default configs/<algo>.yaml")
    timesteps: int = Field(ge=1, description="env steps per trial (ASHA may stop it earlier)")
    search_space: dict[str, Domain] = Field(default_factory=dict, description="hyperparameter or env.<field> -> domain")


class AshaConfig(FrozenConfig):
    grace_period_steps: int = Field(default=10_000, ge=1, description="env steps before ASHA may stop a trial")
    reduction_factor: float = Field(default=2.0, gt=1.0)


class MlflowConfig(FrozenConfig):
    tracking_uri: str = "sqlite:///runs/mlflow.db"
    experiment: str = "rlportfolio-sweeps"


class SweepConfig(FrozenConfig):
    name: str = Field(
        default="sweep", pattern=r"^[A-Za-z0-9_.-]+$", description="prefix of every run's name: <name>-<data>-<time>"
    )
    storage_path: str = "runs/sweeps"
    models_dir: str = "models"
    num_samples: int = Field(default=2, ge=1, description="sampled configurations per algorithm")
    seeds: tuple[int, ...] = Field(default=(0,), min_length=1)
    search_seed: int = 0
    max_concurrent_trials: int = Field(default=2, ge=1)
    num_cpus: int | None = Field(default=None, ge=1, description="CPUs of a local Ray instance; null = all")
    checkpoint_every_iterations: int = Field(default=5, ge=1)
    time_budget_s: float | None = Field(
        default=None,
        gt=0,
        description="wall-clock seconds for the whole sweep, shared among its algorithms (what one leaves goes to the "
        "next); each algorithm's trials stop at its share, and the best so far is exported",
    )
    asha: AshaConfig = AshaConfig()
    mlflow: MlflowConfig = MlflowConfig()
    resources: ResourcesConfig | None = Field(
        default=None, description="per-trial resources; overrides the algorithm YAMLs"
    )
    algos: dict[Literal["dqn", "sac", "ppo"], AlgoSweep]
    gate: GateConfig = Field(
        default=GateConfig(), description="the promotion gate over every exported agent and baseline, after the sweep"
    )

    def n_trials(self, algo: str) -> int:
        """Trials Tune creates for ``algo``: samples x seeds x every grid dimension's values."""
        grids = [len(d.grid) for d in self.algos[algo].search_space.values() if d.grid is not None]
        return self.num_samples * len(self.seeds) * math.prod(grids)


def trial_train_config(sweep: SweepConfig, algo: str, overrides: dict[str, Any]) -> TrainConfig:
    spec = sweep.algos[algo]
    merged = dict(overrides)
    merged["timesteps"] = spec.timesteps
    merged["checkpoint_every_iterations"] = sweep.checkpoint_every_iterations
    merged["gate"] = sweep.gate.model_dump()  # checked with the data before Ray starts
    if sweep.resources is not None:
        # Only the fields the sweep sets: the algorithm's own (e.g. SAC's rollout_fragment_length) stay.
        merged["resources"] = sweep.resources.model_dump(exclude_unset=True)
    return resolve_train_config(algo, spec.config, overrides=merged)


def check_search_space(sweep: SweepConfig, algo: str, base: TrainConfig, rng: np.random.Generator) -> None:
    """Sample every domain once and build the resulting configs, so a bad space fails before Ray starts."""
    from training.algorithms import build_algorithm_config

    spec = sweep.algos[algo]
    for _ in range(3):
        sampled_hp: dict[str, Any] = {}
        sampled_env: dict[str, Any] = {}
        for key, domain in spec.search_space.items():
            tune_domain = domain.to_tune()
            try:
                value = (
                    tune_domain["grid_search"][0]
                    if isinstance(tune_domain, dict)
                    else tune_domain.sample(random_state=rng)
                )
            except Exception as exc:  # Tune raises various errors for unsamplable domains
                raise ConfigError(f"search_space.{algo}.{key}: cannot be sampled ({exc})") from None
            if key.startswith("env."):
                sampled_env[key[4:]] = value
            else:
                sampled_hp[key] = value.item() if isinstance(value, np.generic) else value
        try:
            candidate = parse_config(
                TrainConfig,
                base.model_dump()
                | {"hyperparameters": base.hyperparameters | sampled_hp, "env": base.env.model_dump() | sampled_env},
                where=f"search_space.{algo}",
            )
            build_algorithm_config(candidate).validate()
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"search_space.{algo}: a sampled configuration is invalid: {exc}") from None


def check_sweep(
    sweep: SweepConfig, algos: Sequence[str], data: str | None, *, require_devices: bool = True
) -> dict[str, TrainConfig]:
    """Resolve and check every algorithm's base config and search space; no Ray work (``require_devices``:
    ``check_training``'s)."""
    missing = [a for a in algos if a not in sweep.algos]
    if missing:
        raise ConfigError(f"--algos: {missing} not configured in the sweep YAML (has {sorted(sweep.algos)})")
    overrides = env_overrides(data)
    rng = np.random.default_rng(sweep.search_seed)
    bases = {}
    for algo in algos:
        base = trial_train_config(sweep, algo, overrides)
        base = with_regime_model(base, check_training(base, require_devices=require_devices))
        check_search_space(sweep, algo, base, rng)
        bases[algo] = base
    return bases
