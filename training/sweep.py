"""Hyperparameter sweeps over DQN, SAC and PPO with Ray Tune, ASHA early stopping and MLflow tracking.

    python -m training.sweep [--config configs/sweep.yaml] [--algos dqn,sac,ppo] [--num-samples N] [--resume]

One Tune experiment per algorithm under ``<storage_path>/<name>/<algo>``. Each sampled configuration runs once
per seed in ``seeds`` (same hyperparameters, different seeds), so the results table can report the mean and spread
of a configuration rather than one lucky seed. ASHA stops weak trials early on the validation metric. Every trial
is logged to MLflow (SQLite file by default) and TensorBoard. ``--resume`` continues an interrupted sweep: finished
trials are kept, unfinished ones resume from their last checkpoint. At the end the best trial per algorithm (by its
best validation log growth) is exported to ``models/<algo>/`` and the exported folder is logged to its MLflow run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import Field, model_validator

from envs.config import FrozenConfig, load_yaml, parse_config
from envs.errors import ConfigError, DataError
from training.config import ALGORITHMS, VALIDATION_METRIC, ResourcesConfig, TrainConfig, env_overrides, resolve_train_config

log = logging.getLogger(__name__)

BEST_METRIC = "validation/best_log_growth"
STEPS = "num_env_steps_sampled_lifetime"


class Domain(FrozenConfig):
    """One search dimension; exactly one field set. ``grid`` values are all tried (with every random sample)."""

    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    grid: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Domain":
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
    name: str = Field(default="sweep", pattern=r"^[A-Za-z0-9_.-]+$")
    storage_path: str = "runs/sweeps"
    models_dir: str = "models"
    num_samples: int = Field(default=2, ge=1, description="sampled configurations per algorithm")
    seeds: tuple[int, ...] = Field(default=(0,), min_length=1)
    search_seed: int = 0
    max_concurrent_trials: int = Field(default=2, ge=1)
    num_cpus: int | None = Field(default=None, ge=1, description="CPUs of a local Ray instance; null = all")
    checkpoint_every_iterations: int = Field(default=5, ge=1)
    asha: AshaConfig = AshaConfig()
    mlflow: MlflowConfig = MlflowConfig()
    resources: ResourcesConfig | None = Field(default=None, description="per-trial resources; overrides the algorithm YAMLs")
    algos: dict[Literal["dqn", "sac", "ppo"], AlgoSweep]


def mlflow_uri(uri: str) -> str:
    """Make a relative ``sqlite:///path`` absolute (Tune trials run in other working directories)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        path = Path(uri[len(prefix) :]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return uri


def trial_train_config(sweep: SweepConfig, algo: str, overrides: dict[str, Any]) -> TrainConfig:
    spec = sweep.algos[algo]
    merged = dict(overrides)
    merged["timesteps"] = spec.timesteps
    merged["checkpoint_every_iterations"] = sweep.checkpoint_every_iterations
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
                value = tune_domain["grid_search"][0] if isinstance(tune_domain, dict) else tune_domain.sample(random_state=rng)
            except Exception as exc:  # Tune raises various errors for unsamplable domains
                raise ConfigError(f"search_space.{algo}.{key}: cannot be sampled ({exc})") from None
            if key.startswith("env."):
                sampled_env[key[4:]] = value
            else:
                sampled_hp[key] = value.item() if isinstance(value, np.generic) else value
        try:
            candidate = parse_config(
                TrainConfig,
                base.model_dump() | {"hyperparameters": base.hyperparameters | sampled_hp, "env": base.env.model_dump() | sampled_env},
                where=f"search_space.{algo}",
            )
            build_algorithm_config(candidate)
        except ConfigError as exc:
            raise ConfigError(f"search_space.{algo}: a sampled configuration is invalid: {exc}") from None


def preflight(sweep: SweepConfig, algos: Sequence[str], data: str | None) -> dict[str, TrainConfig]:
    """Resolve and check every algorithm's base config and search space; no Ray work."""
    from training.train import preflight as train_preflight

    missing = [a for a in algos if a not in sweep.algos]
    if missing:
        raise ConfigError(f"--algos: {missing} not configured in the sweep YAML (has {sorted(sweep.algos)})")
    overrides = env_overrides(data)
    rng = np.random.default_rng(sweep.search_seed)
    bases = {}
    for algo in algos:
        base = trial_train_config(sweep, algo, overrides)
        train_preflight(base)
        check_search_space(sweep, algo, base, rng)
        bases[algo] = base
    return bases


def param_space(base: TrainConfig, sweep: SweepConfig, algo: str, run_dir: Path) -> dict[str, Any]:
    from ray import tune

    from training.algorithms import build_algorithm_config

    space = build_algorithm_config(base, run_dir=str(run_dir), per_trial=True).to_dict()
    env_config = dict(space["env_config"])
    for key, domain in sweep.algos[algo].search_space.items():
        if key.startswith("env."):
            env_config[key[4:]] = domain.to_tune()
        else:
            space[key] = domain.to_tune()
    space["env_config"] = env_config
    space["seed"] = tune.grid_search(list(sweep.seeds)) if len(sweep.seeds) > 1 else sweep.seeds[0]
    return space


def run_algo(sweep: SweepConfig, algo: str, base: TrainConfig, *, resume: bool) -> Any:
    """Run (or resume) one algorithm's Tune experiment; returns its ``ResultGrid``."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from training.algorithms import _algorithm_config_class
    from training.tracking import CuratedMLflowLoggerCallback

    storage = Path(sweep.storage_path).resolve() / sweep.name
    experiment_dir = storage / algo
    trainable = _algorithm_config_class(algo)().algo_class
    if resume:
        if not tune.Tuner.can_restore(str(experiment_dir)):
            raise ConfigError(f"--resume: no sweep to resume at {experiment_dir}")
        print(f"[{algo}] resuming {experiment_dir}", file=sys.stderr, flush=True)
        # The param space holds a class (the validation callback), which Tune stores by reference: pass it again.
        tuner = tune.Tuner.restore(
            str(experiment_dir), trainable=trainable, resume_unfinished=True, resume_errored=True,
            param_space=param_space(base, sweep, algo, storage / "best_modules" / algo),
        )
        return tuner.fit()

    search_keys = list(sweep.algos[algo].search_space)
    reporter = tune.CLIReporter(
        metric_columns={STEPS: "steps", "validation/log_growth": "val_g", BEST_METRIC: "best_val_g", "validation/sharpe": "val_sharpe"},
        parameter_columns=[k if not k.startswith("env.") else f"env_config/{k[4:]}" for k in search_keys] + ["seed"],
        max_report_frequency=30,
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(base, sweep, algo, storage / "best_modules" / algo),
        tune_config=tune.TuneConfig(
            metric=VALIDATION_METRIC,
            mode="max",
            num_samples=sweep.num_samples,
            search_alg=BasicVariantGenerator(
                constant_grid_search=True, random_state=sweep.search_seed, max_concurrent=sweep.max_concurrent_trials
            ),
            scheduler=ASHAScheduler(
                time_attr=STEPS,
                max_t=sweep.algos[algo].timesteps,
                grace_period=min(sweep.asha.grace_period_steps, sweep.algos[algo].timesteps),
                reduction_factor=sweep.asha.reduction_factor,
            ),
        ),
        run_config=tune.RunConfig(
            name=algo,
            storage_path=str(storage),
            stop={STEPS: sweep.algos[algo].timesteps},
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2, checkpoint_frequency=sweep.checkpoint_every_iterations, checkpoint_at_end=True
            ),
            callbacks=[
                CuratedMLflowLoggerCallback(
                    tracking_uri=mlflow_uri(sweep.mlflow.tracking_uri),
                    experiment_name=sweep.mlflow.experiment,
                    tags={"sweep": sweep.name, "algo": algo},
                    param_keys=[k for k in search_keys if not k.startswith("env.")],
                )
            ],
            progress_reporter=reporter,
            verbose=1,
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    )
    return tuner.fit()


def _config_key(config: dict[str, Any], search_keys: Sequence[str]) -> tuple:
    values = []
    for key in search_keys:
        value = config["env_config"].get(key[4:]) if key.startswith("env.") else config.get(key)
        values.append(json.dumps(value, sort_keys=True, default=str))
    return tuple(values)


def summarize(result_grid: Any, sweep: SweepConfig, algo: str) -> dict[str, Any]:
    """Per-configuration mean and spread over seeds, and the best trial, for one algorithm."""
    search_keys = list(sweep.algos[algo].search_space)
    groups: dict[tuple, dict[str, Any]] = {}
    trials = []
    for result in result_grid:
        if result.error or not result.metrics:
            trials.append({"trial_dir": Path(result.path).name, "error": str(result.error)[:300]})
            continue
        metrics = result.metrics
        best = metrics.get("validation", {}).get("best_log_growth", metrics.get(BEST_METRIC))
        entry = {
            "trial_id": metrics["trial_id"],
            "trial_dir": Path(result.path).name,
            "seed": result.config.get("seed"),
            "params": {k: (result.config["env_config"].get(k[4:]) if k.startswith("env.") else result.config.get(k)) for k in search_keys},
            "best_validation_log_growth": best,
            "env_steps": metrics.get(STEPS),
            "seconds": metrics.get("time_total_s"),
            "iterations": metrics.get("training_iteration"),
        }
        trials.append(entry)
        group = groups.setdefault(_config_key(result.config, search_keys), {"params": entry["params"], "values": [], "trials": []})
        group["values"].append(best)
        group["trials"].append(entry["trial_id"])
    configurations = []
    for group in groups.values():
        values = np.asarray(group["values"], dtype=float)
        configurations.append(
            {
                "params": group["params"],
                "seeds": len(values),
                "mean_validation_log_growth": float(values.mean()),
                "std_validation_log_growth": float(values.std(ddof=1)) if len(values) > 1 else None,
                "trials": group["trials"],
            }
        )
    configurations.sort(key=lambda c: c["mean_validation_log_growth"], reverse=True)
    ok = [t for t in trials if "error" not in t]
    best_trial = max(ok, key=lambda t: t["best_validation_log_growth"]) if ok else None
    return {"algo": algo, "n_trials": len(trials), "configurations": configurations, "trials": trials, "best_trial": best_trial}


def export_best(summary: dict[str, Any], sweep: SweepConfig, algo: str, base: TrainConfig) -> str | None:
    """Export the best trial's best module to ``models/<algo>`` and log it to that trial's MLflow run."""
    from envs.portfolio_env import PortfolioEnv
    from training.export import export_policy
    from training.validation import BEST_MODULE_DIR, BEST_RECORD

    best = summary["best_trial"]
    if best is None:
        return None
    storage = Path(sweep.storage_path).resolve() / sweep.name
    trial_dir = storage / "best_modules" / algo / best["trial_dir"]
    record = json.loads((trial_dir / BEST_RECORD).read_text())
    env_config = base.env.model_copy(update={k[4:]: v for k, v in best["params"].items() if k.startswith("env.")})
    env = PortfolioEnv(env_config)
    resolved = base.model_dump(mode="json")
    resolved["hyperparameters"] = base.hyperparameters | {k: v for k, v in best["params"].items() if not k.startswith("env.")}
    resolved["env"] = env_config.model_dump(mode="json")
    resolved["seed"] = best["seed"]
    agent_dir = export_policy(
        trial_dir / BEST_MODULE_DIR,
        sweep.models_dir,
        agent=algo,
        algorithm=algo,
        env_config=env_config,
        market=env.market,
        splits=env.splits,
        validation={k: v for k, v in record.items() if isinstance(v, (int, float))},
        source_checkpoint=str(trial_dir),
        seed=best["seed"],
        resolved_config=resolved,
        extra={
            "sweep": {"name": sweep.name, "trial_id": best["trial_id"], "n_trials": summary["n_trials"], "params": best["params"]},
            "training": {
                "env_steps": best["env_steps"],
                "seconds": best["seconds"],
                "env_steps_per_second": round(best["env_steps"] / best["seconds"], 1) if best["seconds"] else None,
            },
        },
    )
    _log_artifact(sweep, best["trial_id"], agent_dir)
    return str(agent_dir)


def _log_artifact(sweep: SweepConfig, trial_id: str, agent_dir: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri(sweep.mlflow.tracking_uri))
    experiment = client.get_experiment_by_name(sweep.mlflow.experiment)
    if experiment is None:
        return
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.trial_id = '{trial_id}'")
    if runs:
        client.log_artifacts(runs[0].info.run_id, str(agent_dir), artifact_path="policy")
        client.set_tag(runs[0].info.run_id, "exported_to", str(agent_dir))


def print_table(summary: dict[str, Any]) -> None:
    print(f"\n{summary['algo'].upper()}: {summary['n_trials']} trials", flush=True)
    print(f"  {'mean val log growth':>20} {'std':>10} {'seeds':>5}  params")
    for c in summary["configurations"]:
        std = "-" if c["std_validation_log_growth"] is None else f"{c['std_validation_log_growth']:.6f}"
        print(f"  {c['mean_validation_log_growth']:>+20.6f} {std:>10} {c['seeds']:>5}  {json.dumps(c['params'], default=str)}")
    best = summary["best_trial"]
    if best:
        print(f"  best trial {best['trial_id']} (seed {best['seed']}): {best['best_validation_log_growth']:+.6f} per day")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/sweep.yaml")
    parser.add_argument("--algos", default=None, help="comma-separated subset, e.g. dqn,ppo (default: all in the YAML)")
    parser.add_argument("--num-samples", type=int, help="sampled configurations per algorithm")
    parser.add_argument("--data", help="price CSV (default: the algorithm configs' data)")
    parser.add_argument("--name", help="sweep name (default from the YAML)")
    parser.add_argument("--models-dir", help="where the best policies are exported (default from the YAML)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic reporter honours our short column list

    try:
        raw = load_yaml(args.config)
        if args.num_samples is not None:
            raw["num_samples"] = args.num_samples
        if args.name is not None:
            raw["name"] = args.name
        if args.models_dir is not None:
            raw["models_dir"] = args.models_dir
        sweep = parse_config(SweepConfig, raw, where=args.config)
        algos = [a.strip() for a in args.algos.split(",")] if args.algos else list(sweep.algos)
        unknown = [a for a in algos if a not in ALGORITHMS]
        if unknown:
            raise ConfigError(f"--algos: unknown algorithm(s) {unknown}; choose from {', '.join(ALGORITHMS)}")
        bases = preflight(sweep, algos, args.data)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from training.train import init_ray

    init_ray(sweep.num_cpus)
    started = time.perf_counter()
    summaries = {}
    for algo in algos:
        print(f"\n==> sweeping {algo.upper()}: {sweep.num_samples} configuration(s) x {len(sweep.seeds)} seed(s), "
              f"{sweep.algos[algo].timesteps} env steps each", file=sys.stderr, flush=True)
        try:
            grid = run_algo(sweep, algo, bases[algo], resume=args.resume)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        summary = summarize(grid, sweep, algo)
        summary["exported"] = export_best(summary, sweep, algo, bases[algo])
        summaries[algo] = summary
        print_table(summary)
    out = Path(sweep.storage_path) / sweep.name / "summary.json"
    out.write_text(json.dumps({"name": sweep.name, "seconds": round(time.perf_counter() - started, 1), "algos": summaries}, indent=1, default=str))
    print(f"\nsummary: {out}", flush=True)
    failed = [a for a, s in summaries.items() if s["best_trial"] is None]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
