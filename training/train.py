"""Train one agent: ``python -m training.train --algo {dqn,sac,ppo} [--config FILE] [--data FILE.csv] [--timesteps N]``.

Prints one progress line per iteration on stderr (timesteps, episode return, validation metrics, throughput),
checkpoints the algorithm every ``checkpoint_every_iterations`` under ``runs/<agent>-<time>/``, keeps the module
with the best validation log growth, and exports it to ``models/<agent>/``. The final JSON summary goes to stdout.
Every config, data and resource problem is reported before Ray starts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from envs.errors import ConfigError, DataError
from envs.portfolio_env import PortfolioEnv
from training.config import ALGORITHMS, TrainConfig, env_overrides, resolve_train_config

log = logging.getLogger(__name__)


def preflight(config: TrainConfig) -> PortfolioEnv:
    """Check data, env and resources before any Ray work; returns a train-split env (for its market and splits)."""
    if config.resources.num_gpus_per_learner > 0:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"resources.num_gpus_per_learner: {config.resources.num_gpus_per_learner} GPU(s) requested but this "
                "machine has none (torch.cuda.is_available() is False); use a CPU config such as configs/sweep.yaml"
            )
    from evaluation.backtest import evaluation_env

    env = PortfolioEnv(config.env)
    evaluation_env(config.env, "validation")  # what the validation callback will build: fail here, not in a trial
    return env


def init_ray(num_cpus: int | None = None) -> None:
    """Start (or join) Ray: ``RAY_ADDRESS`` when set (a cluster, ``ray job submit``), else a local instance."""
    import ray

    from envs import register_rllib

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    register_rllib()


def progress_line(result: dict[str, Any], elapsed_s: float, steps_per_s: float) -> str:
    val = result.get("validation", {})
    ret = result.get("env_runners", {}).get("episode_return_mean")
    return (
        f"iter {result['training_iteration']:>4}  steps {int(result.get('num_env_steps_sampled_lifetime', 0)):>8}  "
        f"episode_return {ret if ret is None else f'{ret:8.2f}'}  "
        f"val: log_growth {val.get('log_growth', float('nan')):+.6f} sharpe {val.get('sharpe', float('nan')):+.2f} "
        f"mdd {val.get('max_drawdown', float('nan')):.2f} turnover/yr {val.get('annual_turnover', float('nan')):.1f}  "
        f"{steps_per_s:.0f} steps/s  {elapsed_s:.0f}s"
    )


def train(config: TrainConfig, *, agent: str, runs_dir: Path, models_dir: Path, num_cpus: int | None = None) -> dict[str, Any]:
    """Train, checkpoint and export one agent; returns the summary."""
    from training.algorithms import build_algorithm_config
    from training.export import export_policy
    from training.validation import BEST_MODULE_DIR, BEST_RECORD

    env = preflight(config)
    run_dir = runs_dir / f"{agent}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    algo_config = build_algorithm_config(config, run_dir=str(run_dir))
    init_ray(num_cpus)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=1))
    episodes = (
        f"a fresh {config.env.episode_days}-day path of {env.market.source}'s law per episode"
        if env.trains_on_law else f"the train split of {env.market.source}"
    )
    print(f"training {config.algo.upper()} '{agent}' for {config.timesteps} env steps on {episodes}; run dir {run_dir}", file=sys.stderr)

    algorithm = algo_config.build_algo()
    started = time.perf_counter()
    steps = 0
    result: dict[str, Any] = {}
    checkpoint = None
    try:
        while steps < config.timesteps:
            iteration_start = time.perf_counter()
            before = steps
            result = algorithm.train()
            steps = int(result.get("num_env_steps_sampled_lifetime", 0))
            rate = (steps - before) / max(time.perf_counter() - iteration_start, 1e-9)
            print(progress_line(result, time.perf_counter() - started, rate), file=sys.stderr, flush=True)
            if result["training_iteration"] % config.checkpoint_every_iterations == 0:
                checkpoint = algorithm.save_to_path(str((run_dir / "checkpoint").resolve()))
        checkpoint = algorithm.save_to_path(str((run_dir / "checkpoint").resolve()))
    finally:
        algorithm.stop()
    elapsed = time.perf_counter() - started

    best = json.loads((run_dir / BEST_RECORD).read_text())
    exported = export_policy(
        run_dir / BEST_MODULE_DIR,
        models_dir,
        agent=agent,
        algorithm=config.algo,
        env_config=config.env,
        market=env.market,
        splits=env.splits,
        validation={k: v for k, v in best.items() if isinstance(v, (int, float))},
        source_checkpoint=str(checkpoint),
        seed=config.seed,
        resolved_config=config.model_dump(mode="json"),
        extra={"training": {"env_steps": steps, "seconds": round(elapsed, 1), "env_steps_per_second": round(steps / elapsed, 1)}},
    )
    return {
        "agent": agent,
        "algorithm": config.algo,
        "env_steps": steps,
        "seconds": round(elapsed, 1),
        "env_steps_per_second": round(steps / elapsed, 1),
        "best_validation": best,
        "exported": str(exported),
        "checkpoint": str(checkpoint),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", required=True, help=f"one of {', '.join(ALGORITHMS)}")
    parser.add_argument("--config", help="algorithm YAML (default configs/<algo>.yaml)")
    parser.add_argument("--data", help="price CSV (default: the config's data, else the built-in synthetic market)")
    parser.add_argument("--timesteps", type=int, help="env steps to train (default from the config)")
    parser.add_argument("--seed", type=int, help="random seed (default from the config)")
    parser.add_argument("--agent", help="exported agent name (default the algorithm name)")
    parser.add_argument("--runs-dir", default="runs", help="where checkpoints go (default runs/)")
    parser.add_argument("--models-dir", default="models", help="where the policy is exported (default models/)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray instance (default all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        overrides = env_overrides(args.data)
        if args.timesteps is not None:
            overrides["timesteps"] = args.timesteps
        if args.seed is not None:
            overrides["seed"] = args.seed
        config = resolve_train_config(args.algo, args.config, overrides=overrides)
        summary = train(
            config,
            agent=args.agent or config.algo,
            runs_dir=Path(args.runs_dir),
            models_dir=Path(args.models_dir),
            num_cpus=args.num_cpus,
        )
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
