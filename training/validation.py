"""Validation inside training: after every iteration, play the current policy deterministically over the whole
validation split (costs on; or over ``validation_paths`` fresh paths of a synthetic market's law when training draws
from that law) and add its financial metrics to the result, where Tune, MLflow and TensorBoard see
them as ``validation/<metric>``. The best module so far (by ``validation/mean_daily_log_growth``) is saved beside the run,
so model selection uses validation data only and the test split is never touched.

The run dir may be a storage URI (a sweep's ``storage_path`` on S3), so that a trial restored on another node after
losing its own finds its best module. Each kept module goes to a new ``best_module-<iteration>-<id>`` folder, and
``best_validation.json``, written whole after it, names the one that counts (``kept_module``); older folders are
deleted after that. No step renames a folder, which object stores cannot do atomically.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray.rllib.callbacks.callbacks import RLlibCallback

from backtesting.backtest import evaluation_env, path_env, run_batched
from core.storage import Location
from envs.config import EnvConfig
from policies.policy import Policy

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

BEST_MODULE_DIR = "best_module"
BEST_RECORD = "best_validation.json"


def kept_module(run_dir: str | Path | Location) -> Location:
    """The module a run (or a sweep trial's best-module folder) kept: the folder its ``best_validation.json``
    names (``best_module`` in records written before folders were numbered)."""
    run_dir = Location.of(run_dir)
    record = json.loads((run_dir / BEST_RECORD).read_text())
    return run_dir / record.get("module", BEST_MODULE_DIR)


VALIDATION_SEED_KEY = 0x7A11D  # seeds of validation paths: SeedSequence([synthetic_seed, key, i]), never an int seed


def _metrics(result) -> dict[str, float]:
    row = result.metrics()
    return {
        "mean_daily_log_growth": row["mean_daily_log_growth"],
        "annual_return": row["annual_return"],
        "sharpe": row["sharpe"],
        "max_drawdown": row["max_drawdown"],
        "annual_turnover": row["annual_turnover"],
        "total_cost": row["total_cost"],
        "final_wealth": float(result.wealth[-1]),
    }


def validation_envs(env_config: EnvConfig | dict) -> list:
    """The envs validation plays: the data's validation split, or ``validation_paths`` fresh paths of the market's
    law when training draws its episodes from that law (``train_paths`` law or auto on a synthetic market).

    Law paths come from ``SeedSequence([synthetic_seed, VALIDATION_SEED_KEY, i])``: disjoint from the training
    streams (the env's own generator) and from the integer seeds of ``benchmarks/policy_quality.py``.
    """
    import numpy as np

    from envs.portfolio_env import PortfolioEnv
    from envs.synthetic import law_path

    split_env = evaluation_env(env_config, "validation")
    training = PortfolioEnv(env_config)
    n_paths = training.config.validation_paths
    if not n_paths or not training.trains_on_law:
        return [split_env]
    cfg = training.config
    law, warmup = training.law, cfg.warmup_days
    n_days = warmup + split_env.n_steps + 1
    envs = []
    for i in range(n_paths):
        rng = np.random.default_rng(np.random.SeedSequence([cfg.data.synthetic_seed, VALIDATION_SEED_KEY, i]))
        envs.append(path_env(env_config, law_path(law, split_env.market.dates[:n_days], rng, f"validation path {i}")))
    return envs


def validate_all(policy: Policy, envs: list) -> dict[str, float]:
    """Financial metrics of ``policy`` over each env's whole split (envs from ``validation_envs``), averaged: every
    path has the same length, so log growth averages per day.

    The envs play in lockstep, one batched forward pass per day for all of them (``run_batched``).
    """
    import numpy as np

    results = run_batched("agent", policy.weights_batch, envs)
    rows = [_metrics(result) for result in results]
    metrics = {key: float(sum(row[key] for row in rows) / len(rows)) for key in rows[0]}
    metrics["mean_daily_log_growth_se"] = standard_error(
        [row["mean_daily_log_growth"] for row in rows], np.diff(np.log(results[0].wealth))
    )
    return metrics


def standard_error(path_means: list[float], one_path_daily: np.ndarray) -> float:
    """Standard error of the mean daily log growth: across paths when there are several (each path's mean is one
    draw), else across the one path's days (serial correlation ignored: daily log growth is close to uncorrelated)."""
    import numpy as np

    values = np.asarray(path_means if len(path_means) > 1 else one_path_daily, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def limit_torch_threads() -> None:
    """Match torch's intra-op threads to the CPUs Ray gave this process.

    Tune trial actors do not always inherit ``OMP_NUM_THREADS``; two SAC trials on two CPUs, each spinning a thread
    per core, ran 10x slower than one trial alone (measured: 35 vs 350 env steps/s).
    """
    import ray
    import torch

    if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        if cpus:
            torch.set_num_threads(max(1, int(cpus)))


class ValidationCallback(RLlibCallback):
    """Adds ``result["validation"]`` every iteration and keeps the best module in ``<run dir>/best_module-*``.

    The run dir is ``RUN_DIR`` when set (``with_run_dir``; with ``PER_TRIAL``, ``RUN_DIR/<trial dir name>``),
    else the algorithm's log dir.
    """

    RUN_DIR: str | None = None
    PER_TRIAL: bool = False
    EVERY_STEPS: int = 0  # validate once at least this many env steps passed since the last validation (0: always)
    SELECTION: str = "best"  # TrainConfig.selection: "best" or "within_one_se"

    def on_algorithm_init(self, *, algorithm, metrics_logger=None, **kwargs: Any) -> None:
        limit_torch_threads()
        self._envs = validation_envs(dict(algorithm.config.env_config))
        self._dir: Location | None = None  # known only once Tune has set the trial id, at the first result
        self._best = -math.inf  # the best validation score so far
        self._best_se = 0.0  # its standard error
        self._selected = -math.inf  # the score of the module kept in best_module (the best one under "best")
        self._validated_at: int | None = None
        self._last: dict[str, float] = {}

    def _run_dir(self, algorithm) -> Location:
        if self._dir is None:
            if self.RUN_DIR is None:
                self._dir = Location.of(algorithm.logdir)
            elif self.PER_TRIAL:
                # RLlib algorithms do not see their Tune trial id; the trial's working directory carries its name.
                self._dir = Location.of(self.RUN_DIR) / Path(algorithm.logdir).name
            else:
                self._dir = Location.of(self.RUN_DIR)
            record = self._dir / BEST_RECORD
            # A resumed trial keeps its best so far instead of overwriting it with a worse module.
            if record.is_file():
                kept = json.loads(record.read_text())
                self._selected = kept["mean_daily_log_growth"]
                self._best = kept.get("best_mean_daily_log_growth", self._selected)
                self._best_se = kept.get("best_mean_daily_log_growth_se", 0.0)
        return self._dir

    def _keep(self, module, run_dir: Location, record: dict[str, Any]) -> None:
        """Save ``module`` in a new folder, name it in the record, then delete the folders kept before."""
        slot = f"{BEST_MODULE_DIR}-{int(record.get('training_iteration') or 0):06d}-{uuid.uuid4().hex[:6]}"
        if run_dir.is_local:
            run_dir.mkdir()
            module.save_to_path(str(run_dir.local_path / slot))
        else:
            with tempfile.TemporaryDirectory(prefix="rlportfolio-module-") as local:
                module.save_to_path(local)
                (run_dir / slot).upload(local)
        (run_dir / BEST_RECORD).write_text(json.dumps({**record, "module": slot}, indent=1))
        for old in run_dir.children():
            if old.name.startswith(BEST_MODULE_DIR) and old.name != slot:
                old.delete()

    def _keeps(self, metrics: dict[str, float]) -> bool:
        """Whether this validation's module replaces the kept one; updates the best score.

        ``within_one_se`` keeps the newest module scoring within one standard error of the best so far (Breiman's
        one-standard-error rule): a later module that validation cannot tell apart from the best is preferred over
        an early one that was luckier on the validation paths. Kept online, it ends as the newest module within one
        standard error of the final best (a module kept before the final best arrived is replaced by that best)."""
        score, se = metrics["mean_daily_log_growth"], metrics["mean_daily_log_growth_se"]
        improved = score > self._best
        if improved:
            self._best, self._best_se = score, se
        return improved or (self.SELECTION == "within_one_se" and score >= self._best - self._best_se)

    def on_train_result(self, *, algorithm, metrics_logger=None, result: dict, **kwargs: Any) -> None:
        started = time.perf_counter()
        if ray.is_initialized():  # where this iteration ran (hostname and IP do not tell nodes on one machine apart)
            result["node_id"] = ray.get_runtime_context().get_node_id()
        steps = int(result.get("num_env_steps_sampled_lifetime") or 0)
        if self._validated_at is not None and steps - self._validated_at < self.EVERY_STEPS:
            # Not due: repeat the last figures (Tune's scheduler needs its metric in every result), marked stale.
            result["validation"] = {
                **self._last,
                "best_mean_daily_log_growth": self._best,
                "selected_mean_daily_log_growth": self._selected,
                "seconds": 0.0,
                "fresh": 0,
            }
            return
        self._validated_at = steps
        run_dir = self._run_dir(algorithm)
        module = algorithm.get_module()
        metrics = validate_all(Policy(module, self._envs[0].action_map), self._envs)
        if self._keeps(metrics):
            self._selected = metrics["mean_daily_log_growth"]
            record = {
                **metrics,
                "best_mean_daily_log_growth": self._best,
                "best_mean_daily_log_growth_se": self._best_se,
                "training_iteration": result.get("training_iteration"),
                "env_steps": result.get("num_env_steps_sampled_lifetime"),
            }
            self._keep(module, run_dir, record)
        self._last = metrics
        result["validation"] = {
            **metrics,
            "best_mean_daily_log_growth": self._best,
            "selected_mean_daily_log_growth": self._selected,
            "seconds": time.perf_counter() - started,
            "fresh": 1,
        }


def with_run_dir(
    run_dir: str | Path, *, per_trial: bool = False, every_steps: int = 0, selection: str = "best"
) -> type[ValidationCallback]:
    """A ``ValidationCallback`` that keeps its selected module under ``run_dir`` (per Tune trial if ``per_trial``),
    validates once ``every_steps`` env steps have passed since its last validation (0: every iteration) and selects
    by ``selection`` (``TrainConfig.selection``)."""
    attributes = {
        "RUN_DIR": Location.of(run_dir).uri,
        "PER_TRIAL": per_trial,
        "EVERY_STEPS": every_steps,
        "SELECTION": selection,
    }
    return type("ValidationCallbackInRunDir", (ValidationCallback,), attributes)
