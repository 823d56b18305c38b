"""Hyperparameter sweeps over DQN, SAC and PPO with Ray Tune, ASHA early stopping and MLflow tracking.

    python -m training.sweep [--config configs/sweep.yaml] [--data FILE.csv] [--algos dqn,sac,ppo]
                             [--num-samples N] [--timesteps N] [--time-budget-s S] [--name NAME] [--no-dashboard]
    python -m training.sweep --resume [NAME]        # continue the latest sweep (or NAME) after a crash or a kill

Each run gets its own folder ``<storage_path>/<config name>-<data>-<time>/`` (``training.sweep_state``) holding
one Tune experiment per algorithm, ``summary.json`` and ``sweep.log``. Each sampled configuration runs once per
seed in ``seeds``, so the results table reports a configuration's mean and spread rather than one lucky seed. ASHA
stops weak trials early on the validation metric. Every trial is logged to MLflow (SQLite file by default) and
TensorBoard. The console shows one line per trial iteration (``training.progress``).

``--resume`` continues a sweep killed at any point: algorithms already summarised are kept, an interrupted one
resumes its unfinished trials from their last checkpoints (finished trials are not rerun), and algorithms that never
started run. After each algorithm its best trial (by best validation log growth) is exported to
``<models_dir>/<algo>/`` and attached to its MLflow run; the exported folders are printed at the end.

Ctrl-C (SIGINT) stops the sweep: the running algorithm's trials stop where they are and Tune snapshots them; that
algorithm is neither summarised nor exported (only one whose trials all ended by their budget, ASHA or the time budget
is), ``summary.json`` says ``"complete": false``, and the command that finishes the sweep is printed, e.g.
``rlportfolio sweep --config configs/sweep.yaml --resume NAME``. A second Ctrl-C stops at once; ``--resume`` then
starts from Tune's last periodic snapshot, as after a kill.

Run as a Ray job with a working directory (``ray job submit --working-dir .``), a relative ``storage_path`` or
``models_dir`` is refused (the job runs in a copy that Ray deletes afterwards); ``training.submit`` checks them first.

Exit status: 0 every algorithm finished; 1 an algorithm with no finished trial, or a data error; 2 a usage or
configuration error; 130 stopped by Ctrl-C (128 + SIGINT, as a shell reports a command that SIGINT ended).
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.cli import fail, prog
from core.config import load_yaml, parse_config
from core.errors import ConfigError, DataError
from core.runtime import init_ray, job_working_dir, keep_outside_job, setup_console
from core.storage import Location
from core.tracking import mlflow_uri, sqlite_file
from envs import register_rllib
from envs.sources import data_tag, describe_data
from policies.format import REGISTRY
from training.config import ALGORITHMS, VALIDATION_METRIC, TrainConfig
from training.gate import gate_sweep
from training.progress import STEPS, ProgressCallback, duration
from training.sweep_config import SweepConfig, check_sweep
from training.sweep_interrupts import Interrupts, stopped
from training.sweep_results import export_best, results_table, summarize_trials
from training.sweep_state import (
    LOG,
    AlgoSummary,
    SweepPlan,
    find_sweep,
    local_log,
    read_plan,
    read_summary,
    store_log,
    sweep_name,
    write_plan,
    write_summary,
)

log = logging.getLogger("training.sweep")  # not __name__: run as a script, that is "__main__"
# What a Tune experiment needs to resume as it was: the Tuner (written first), then the snapshot of its trials and
# of its search algorithm's state.
RESUMABLE = ("tuner.pkl", "experiment_state-*.json", "basic-variant-state-*.json")


def param_space(base: TrainConfig, sweep: SweepConfig, algo: str, run_dir: Location) -> dict[str, Any]:
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


def resumable(experiment_dir: Location) -> bool:
    """Whether Tune can resume this experiment as it was: its ``tuner.pkl`` and a snapshot of both its trials
    (``experiment_state-*.json``) and its search algorithm (``basic-variant-state-*.json``).

    ``Tuner.can_restore`` checks ``tuner.pkl`` alone, which Tune writes before its first snapshot. A sweep killed in
    between resumes with Tune's default of one sample (``Tuner.restore`` does not pass ``num_samples`` on, Ray
    2.60), and one without the search algorithm's snapshot never generates the trials it had not started yet: both
    finish "complete" with trials missing. One listing of the folder answers all three."""
    names = [child.name for child in experiment_dir.children()]
    return all(fnmatch.filter(names, pattern) for pattern in RESUMABLE)


def run_algo(plan: SweepPlan, folder: Location, algo: str, time_budget_s: float | None = None) -> Any:
    """Run, resume or (when it already finished) just reload one algorithm's Tune experiment; its ``ResultGrid``.

    :param time_budget_s: stop every trial of this algorithm after this many seconds (Tune's global time budget)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from training.algorithms import algorithm_config_class
    from training.checkpoint_pruning import CheckpointPruner
    from training.tracking import CuratedMLflowLoggerCallback

    sweep, base = plan.sweep, plan.bases[algo]
    experiment_dir = folder / algo
    trainable = algorithm_config_class(algo, base.replay)().algo_class
    # The param space holds a class (the validation callback), which Tune stores by reference: pass it on restore too.
    space = param_space(base, sweep, algo, folder / "best_modules" / algo)
    if resumable(experiment_dir):
        log.info(
            f"{algo}: resuming {experiment_dir} (finished trials are kept, unfinished ones continue from their last checkpoint)"
        )
        tuner = tune.Tuner.restore(
            experiment_dir.uri, trainable=trainable, resume_unfinished=True, resume_errored=True, param_space=space
        )
        return tuner.fit()
    if experiment_dir.exists():
        # Killed before Tune's first whole snapshot: nothing in it can be resumed. Kept to look at on a local disk;
        # an object store cannot rename a folder, and a new experiment there replaces it.
        if experiment_dir.is_local:
            kept = folder.local_path / f"{algo}.unrestorable-{dt.datetime.now():%H%M%S}"
            experiment_dir.local_path.rename(kept)
        else:
            kept = None
            experiment_dir.delete()
        log.warning(
            f"{algo}: {experiment_dir} holds no snapshot of Tune's to resume from (killed before its first one); "
            f"starting the algorithm again" + (f" (what was there is in {kept})" if kept else "")
        )

    spec = sweep.algos[algo]
    search_keys = list(spec.search_space)
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=VALIDATION_METRIC,
            mode="max",
            num_samples=sweep.num_samples,
            time_budget_s=time_budget_s,
            search_alg=BasicVariantGenerator(
                constant_grid_search=True, random_state=sweep.search_seed, max_concurrent=sweep.max_concurrent_trials
            ),
            scheduler=ASHAScheduler(
                time_attr=STEPS,
                max_t=spec.timesteps,
                grace_period=min(sweep.asha.grace_period_steps, spec.timesteps),
                reduction_factor=sweep.asha.reduction_factor,
            ),
        ),
        run_config=tune.RunConfig(
            name=algo,
            storage_path=folder.uri,
            stop={STEPS: spec.timesteps},
            # Tune deletes nothing itself (num_to_keep=None): CheckpointPruner keeps what a snapshot can still name.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=None, checkpoint_frequency=sweep.checkpoint_every_iterations, checkpoint_at_end=True
            ),
            callbacks=[
                CheckpointPruner(keep=2),
                ProgressCallback(algo, spec.timesteps, sweep.n_trials(algo)),
                CuratedMLflowLoggerCallback(
                    tracking_uri=mlflow_uri(sweep.mlflow.tracking_uri),
                    experiment_name=sweep.mlflow.experiment,
                    tags={"sweep": plan.name, "algo": algo},
                    param_keys=[k for k in search_keys if not k.startswith("env.")],
                ),
            ],
            verbose=0,  # ProgressCallback prints one line per trial iteration instead of Tune's status tables
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    )
    return tuner.fit()


def new_plan(args: argparse.Namespace, *, require_devices: bool = True) -> SweepPlan:
    """The plan of a new sweep from the YAML and the command line, checked (``check_sweep``) before Ray starts."""
    raw = load_yaml(args.config)
    for key in ("num_samples", "models_dir", "time_budget_s"):
        if getattr(args, key, None) is not None:
            raw[key] = getattr(args, key)
    if args.timesteps is not None:
        for spec in (raw.get("algos") or {}).values():
            if isinstance(spec, dict):
                spec["timesteps"] = args.timesteps
    sweep = parse_config(SweepConfig, raw, where=args.config)
    algos = [a.strip() for a in args.algos.split(",")] if args.algos else list(sweep.algos)
    unknown = [a for a in algos if a not in ALGORITHMS]
    if unknown:
        raise ConfigError(f"--algos: unknown algorithm(s) {unknown}; choose from {', '.join(ALGORITHMS)}")
    bases = check_sweep(sweep, algos, args.data, require_devices=require_devices)
    data = bases[algos[0]].env.data
    name = args.name or sweep_name(sweep.name, data_tag(data))
    parse_config(SweepConfig, sweep.model_dump() | {"name": name}, where="--name")  # the same characters as a YAML name
    return SweepPlan(
        name=name,
        created_at=dt.datetime.now().isoformat(timespec="seconds"),
        config_file=str(Path(args.config).resolve()),
        data=args.data,
        data_label=describe_data(data),
        algos=algos,
        sweep=sweep,
        bases=bases,
    )


def dry_run(args: argparse.Namespace) -> int:
    """``--dry-run``: the plan and every algorithm's placement on the cluster's node types, as text then JSON."""
    from training.placement import cluster_node_types, placement_json, placement_text, sweep_placement

    try:
        if args.resume:
            raise ConfigError("--dry-run plans a new sweep; drop --resume")
        plan = new_plan(args, require_devices=False)
        node_types = cluster_node_types(args.cluster)
        placements = [
            sweep_placement(
                plan.bases[algo], min(plan.sweep.max_concurrent_trials, plan.sweep.n_trials(algo)), node_types
            )
            for algo in plan.algos
        ]
    except (ConfigError, DataError) as exc:
        return fail(exc)
    print(f"dry run of {plan.name} on {args.cluster} (nothing started):", file=sys.stderr)
    print(placement_text(placements), file=sys.stderr)
    print(json.dumps(placement_json(placements), indent=1))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("training.sweep"), description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/sweep.yaml")
    parser.add_argument("--algos", default=None, help="comma-separated subset, e.g. dqn,ppo (default: all in the YAML)")
    parser.add_argument("--num-samples", type=int, help="sampled configurations per algorithm")
    parser.add_argument("--timesteps", type=int, help="env steps per trial for every algorithm (default from the YAML)")
    parser.add_argument("--data", help="price CSV (default: the algorithm configs' data, the built-in market)")
    parser.add_argument("--name", help="this sweep's folder name (default <config name>-<data>-<time>)")
    parser.add_argument("--models-dir", help="where the best policies are exported (default from the YAML)")
    parser.add_argument(
        "--time-budget-s",
        type=float,
        help="wall-clock seconds for the whole sweep, shared among its algorithms; the best trial so far is exported",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="NAME",
        help="continue an interrupted sweep: the latest one under the YAML's storage_path, or NAME",
    )
    parser.add_argument(
        "--no-dashboard", action="store_true", help="start the local Ray instance without its dashboard"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve the sweep and print each trial's placement on --cluster's node types; run nothing (no GPU needed)",
    )
    parser.add_argument("--cluster", default="cluster.yaml", help="cluster launcher YAML for --dry-run")
    args = parser.parse_args(argv)
    setup_console()
    if args.dry_run:
        return dry_run(args)
    # Tune's console: the classic engine at verbose=0 prints nothing (the new one still prints boxes and /tmp/ray paths);
    # the snapshot-frequency hint is about remote storage, and local storage syncs nothing.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    interrupts = Interrupts()
    interrupts.install()
    where: dict[str, Any] = {}  # the plan and folder once known: what an interruption names
    try:
        return run_sweep(args, interrupts, where)
    except KeyboardInterrupt:
        return stopped(args, where.get("plan"), where.get("folder"), where.get("summaries", {}), where.get("algo"))


def run_sweep(args: argparse.Namespace, interrupts: Interrupts, where: dict[str, Any]) -> int:
    started = time.perf_counter()
    try:
        if args.resume:
            fixed = [
                f"--{k.replace('_', '-')}"
                for k in ("algos", "num_samples", "timesteps", "data", "name", "models_dir", "time_budget_s")
                if getattr(args, k) is not None
            ]
            if fixed:
                raise ConfigError(
                    f"--resume continues a sweep with the settings it started with; drop {', '.join(fixed)}"
                )
            storage = parse_config(SweepConfig, load_yaml(args.config), where=args.config).storage_path
            keep_outside_job(storage, "storage_path")
            folder = find_sweep(storage, args.resume)
            plan = read_plan(folder)
        else:
            plan = new_plan(args)
            keep_outside_job(plan.sweep.storage_path, "storage_path")
            folder = write_plan(plan)
        keep_outside_job(plan.sweep.models_dir, "models_dir")
    except (ConfigError, DataError) as exc:
        return fail(exc)
    where.update(plan=plan, folder=folder)
    log_file = local_log(folder)
    setup_console(log_file)
    if job_working_dir() is not None and sqlite_file(plan.sweep.mlflow.tracking_uri) is not None:
        if not plan.sweep.mlflow.tracking_uri.startswith("sqlite:////"):
            log.warning(
                f"mlflow.tracking_uri {plan.sweep.mlflow.tracking_uri} is inside this job's working directory, which "
                "Ray deletes when the job ends: give an absolute sqlite:////path or an MLflow server to keep the runs"
            )
    previous = read_summary(folder)
    summaries: dict[str, AlgoSummary] = dict(previous.algos) if previous else {}
    where["summaries"] = summaries
    seconds_before = previous.seconds if previous else 0.0
    log.info(f"sweep {plan.name}: {', '.join(a.upper() for a in plan.algos)} on {plan.data_label}; results in {folder}")
    try:
        init_ray(plan.sweep.num_cpus, dashboard=not args.no_dashboard)
        register_rllib()
    except ConfigError as exc:
        return fail(exc)
    try:  # the log reaches remote storage even when the sweep dies midway
        for number, algo in enumerate(plan.algos):
            spec = plan.sweep.algos[algo]
            if algo in summaries:
                log.info(f"{algo}: finished earlier in this sweep; kept")
                continue
            share = None
            if plan.sweep.time_budget_s is not None:  # what is left, shared among the algorithms still to run
                left = plan.sweep.time_budget_s - seconds_before - (time.perf_counter() - started)
                share = max(left, 1.0) / len([a for a in plan.algos[number:] if a not in summaries])
            log.info(
                f"{algo}: {plan.sweep.n_trials(algo)} trial(s) ({plan.sweep.num_samples} configuration(s) x "
                f"{len(plan.sweep.seeds)} seed(s)), up to {spec.timesteps:,} env steps each"
                + (f", {duration(share)} in all" if share is not None else "")
            )
            where["algo"] = (algo, "running")
            with interrupts.tune_fit():
                grid = run_algo(plan, folder, algo, share)
            if interrupts.received:
                # Tune stopped the trials where they were and saved them for --resume: nothing of this algorithm is
                # summarised or exported (a trial stopped mid-way is not a finished one, whatever its metrics say).
                write_summary(folder, plan, summaries, seconds_before + time.perf_counter() - started)
                return stopped(args, plan, folder, summaries, where["algo"])
            where["algo"] = (algo, "exporting")
            summary = summarize_trials(grid, plan.sweep, algo)
            summary = summary.model_copy(update={"exported": export_best(summary, plan, folder, algo)})
            summaries[algo] = summary
            print(results_table(summary), flush=True)
            write_summary(folder, plan, summaries, seconds_before + time.perf_counter() - started)
            where.pop("algo")
    finally:
        store_log(folder, log_file)
    exported = {a: s.exported for a, s in summaries.items() if s.exported}
    decision = gate_sweep(plan, summaries) if exported and plan.sweep.gate.enabled else None
    out = write_summary(folder, plan, summaries, seconds_before + time.perf_counter() - started, decision)
    print(
        f"\nexported models: {', '.join(exported.values()) or 'none'}"
        + (f" (registry {Location.of(plan.sweep.models_dir) / REGISTRY})" if exported else "")
    )
    if decision is not None:
        print(f"Served by default: {decision.reason}", flush=True)
    print(f"sweep summary: {out}\nfull log: {folder / LOG}", flush=True)
    print(
        f"learning curves: .venv/bin/tensorboard --logdir {shlex.quote(str(folder))}   trials: .venv/bin/mlflow ui --backend-store-uri "
        f"{mlflow_uri(plan.sweep.mlflow.tracking_uri)}",
        flush=True,
    )
    failed = [a for a in plan.algos if summaries[a].best_trial is None]
    if failed:
        log.warning(f"no trial of {', '.join(failed)} finished; see {folder / LOG} and the trials' error.txt files")
    store_log(folder, log_file)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
