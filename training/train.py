"""Train one agent: ``python -m training.train --algo {dqn,sac,ppo} [--config FILE] [--data FILE.csv] [--timesteps N]
[--time-budget-s S]``.

Prints one progress line per iteration on stderr (timesteps, episode return, validation metrics, throughput),
checkpoints the algorithm every ``checkpoint_every_iterations`` under ``runs/<agent>-<time>/``, keeps the module
with the best validation log growth, and exports it to ``models/<agent>/``. With ``--time-budget-s`` it trains until
the next iteration would end past the budget (or ``--timesteps``, when given too), then checkpoints and exports as
usual: "15 minutes of training" is ``--time-budget-s 900``. The final JSON summary goes to stdout, with the
exported folder's absolute path (or URI) under ``exported``. Every config, data and resource problem is reported
before Ray starts. Run as a Ray job with a working directory (``ray job submit --working-dir .``), a relative
``--models-dir`` is refused: the job runs in a copy that Ray deletes afterwards, and the model would go with it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.cli import fail, prog
from core.errors import ConfigError, DataError
from core.runtime import init_ray, job_working_dir, keep_outside_job, setup_console
from envs import register_rllib
from training.config import (
    ALGORITHMS,
    TrainConfig,
    check_training,
    env_overrides,
    resolve_train_config,
    with_regime_model,
)
from training.progress import Budget, Throttle, duration, iteration_line

log = logging.getLogger("training.train")  # not __name__: run as a script, that is "__main__"


def train(
    config: TrainConfig,
    *,
    agent: str,
    runs_dir: Path,
    models_dir: str | Path,
    num_cpus: int | None = None,
    dashboard: bool = True,
    gate: bool = True,
) -> dict[str, Any]:
    """Train, checkpoint and export one agent, then run the promotion gate over ``models_dir`` (unless ``gate`` is
    False or ``config.gate.enabled`` is off: the walk-forward gates its folds itself); returns the summary. Progress
    and warnings also go to ``train.log`` in the run folder."""
    from policies.export import export_policy
    from training.algorithms import build_algorithm_config
    from training.validation import BEST_RECORD, kept_module

    env = check_training(config)
    config = with_regime_model(config, env)
    run_dir = runs_dir / f"{agent}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    algo_config = build_algorithm_config(config, run_dir=str(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_console(run_dir / "train.log")
    init_ray(num_cpus, dashboard=dashboard)
    register_rllib()
    (run_dir / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=1))
    episodes = {
        "law": f"a fresh {config.env.episode_days}-day path of {env.market.source}'s law per episode",
        "fitted": f"a fresh {config.env.episode_days}-day path of the regime model fitted on {env.market.source}'s train split",
        "bootstrap": f"a {config.env.episode_days}-day block bootstrap of {env.market.source}'s train split per episode",
    }.get(env.path_kind, f"the train split of {env.market.source}")
    limits = [f"{config.timesteps:,} env steps"] if config.timesteps is not None else []
    if config.time_budget_s is not None:
        limits.append(f"{duration(config.time_budget_s)} of wall-clock time")
    log.info(f"training {config.algo.upper()} '{agent}' for {' or '.join(limits)} on {episodes}; run folder {run_dir}")

    algorithm = algo_config.build_algo()
    throttle, progress = Throttle(), logging.getLogger("training.progress")
    budget = Budget(config.timesteps, config.time_budget_s)
    steps = 0
    result: dict[str, Any] = {}
    checkpoint = None
    try:
        while not budget.spent(steps):
            budget.iteration_started()
            result = algorithm.train()
            steps = int(result.get("num_env_steps_sampled_lifetime", 0))
            budget.iteration_ended()
            line = iteration_line(f"{config.algo} '{agent}'", result, config.timesteps, budget.left_s())
            progress.log(throttle.level(agent, budget.spent(steps)), line)
            if result["training_iteration"] % config.checkpoint_every_iterations == 0:
                checkpoint = algorithm.save_to_path(str((run_dir / "checkpoint").resolve()))
        checkpoint = algorithm.save_to_path(str((run_dir / "checkpoint").resolve()))
    finally:
        algorithm.stop()
    elapsed = budget.elapsed_s()
    if config.time_budget_s is not None:
        log.info(
            f"{config.algo} '{agent}': stopped after {steps:,} env steps in {duration(elapsed)} (budget {duration(config.time_budget_s)})"
        )

    best = json.loads((run_dir / BEST_RECORD).read_text())
    exported = export_policy(
        kept_module(run_dir).local_path,
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
        extra={
            "training": {
                "env_steps": steps,
                "seconds": round(elapsed, 1),
                "env_steps_per_second": round(steps / elapsed, 1),
            }
        },
    )
    decision = None
    if gate and config.gate.enabled:
        from training.gate import run_gate

        decision = run_gate(models_dir, config.gate, n_trials=1)
        log.info(f"Served by default: {decision.reason}")
    return {
        "promoted": None if decision is None else decision.promoted,
        "gate": None if decision is None else decision.reason,
        "agent": agent,
        "algorithm": config.algo,
        "env_steps": steps,
        "seconds": round(elapsed, 1),
        "env_steps_per_second": round(steps / elapsed, 1),
        "best_validation": {k: v for k, v in best.items() if k != "module"},
        "exported": str(exported),
        "checkpoint": str(checkpoint),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("training.train"), description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", required=True, help=f"one of {', '.join(ALGORITHMS)}")
    parser.add_argument("--config", help="algorithm YAML (default configs/<algo>.yaml)")
    parser.add_argument("--data", help="price CSV (default: the config's data, else the built-in synthetic market)")
    parser.add_argument("--timesteps", type=int, help="env steps to train (default from the config)")
    parser.add_argument(
        "--time-budget-s",
        type=float,
        help="train for this many wall-clock seconds, then checkpoint and export (with no --timesteps, the budget alone decides)",
    )
    parser.add_argument("--seed", type=int, help="random seed (default from the config)")
    parser.add_argument("--agent", help="exported agent name (default the algorithm name)")
    parser.add_argument("--runs-dir", default="runs", help="where checkpoints go (default runs/)")
    parser.add_argument(
        "--models-dir",
        default="models",
        help="where the policy is exported: a folder or a storage URI such as s3://bucket/models (default models/)",
    )
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray instance (default all)")
    parser.add_argument(
        "--no-dashboard", action="store_true", help="start the local Ray instance without its dashboard"
    )
    args = parser.parse_args(argv)
    setup_console()
    try:
        keep_outside_job(args.models_dir, "--models-dir")
        if job_working_dir() is not None and not Path(args.runs_dir).is_absolute():
            log.warning(
                f"--runs-dir {args.runs_dir} is inside this job's working directory, which Ray deletes when the job "
                "ends: the run's train.log and checkpoints go with it (pass an absolute --runs-dir to keep them)"
            )
        overrides = env_overrides(args.data)
        if args.timesteps is not None:
            overrides["timesteps"] = args.timesteps
        if args.time_budget_s is not None:
            overrides["time_budget_s"] = args.time_budget_s
            if args.timesteps is None:
                overrides["timesteps"] = None
        if args.seed is not None:
            overrides["seed"] = args.seed
        config = resolve_train_config(args.algo, args.config, overrides=overrides)
        summary = train(
            config,
            agent=args.agent or config.algo,
            runs_dir=Path(args.runs_dir),
            models_dir=args.models_dir,
            num_cpus=args.num_cpus,
            dashboard=not args.no_dashboard,
        )
    except (ConfigError, DataError) as exc:
        return fail(exc)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
