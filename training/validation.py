"""Validation inside training: after every iteration, play the current policy deterministically over the whole
validation split (costs on) and add its financial metrics to the result, where Tune, MLflow and TensorBoard see
them as ``validation/<metric>``. The best module so far (by ``validation/log_growth``) is saved beside the run,
so model selection uses validation data only and the test split is never touched.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback

from evaluation.backtest import PolicyStrategy, evaluation_env, run_backtest
from training.policy import Policy

log = logging.getLogger(__name__)

BEST_MODULE_DIR = "best_module"
BEST_RECORD = "best_validation.json"


def validate(policy: Policy, env) -> dict[str, float]:
    """Financial metrics of ``policy`` over the env's whole split (``env`` from ``evaluation_env``)."""
    result = run_backtest(PolicyStrategy("agent", policy.weights), env)
    row = result.metrics()
    return {
        "log_growth": row["mean_daily_log_growth"],
        "annual_return": row["annual_return"],
        "sharpe": row["sharpe"],
        "max_drawdown": row["max_drawdown"],
        "annual_turnover": row["annual_turnover"],
        "total_cost": row["total_cost"],
        "final_wealth": float(result.wealth[-1]),
    }


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
    """Adds ``result["validation"]`` every iteration and keeps the best module in ``<run dir>/best_module``.

    The run dir is ``RUN_DIR`` when set (``with_run_dir``; with ``PER_TRIAL``, ``RUN_DIR/<trial dir name>``),
    else the algorithm's log dir.
    """

    RUN_DIR: str | None = None
    PER_TRIAL: bool = False

    def on_algorithm_init(self, *, algorithm, metrics_logger=None, **kwargs: Any) -> None:
        limit_torch_threads()
        self._env = evaluation_env(dict(algorithm.config.env_config), "validation")
        self._dir: Path | None = None  # known only once Tune has set the trial id, at the first result
        self._best = -math.inf

    def _run_dir(self, algorithm) -> Path:
        if self._dir is None:
            if self.RUN_DIR is None:
                self._dir = Path(algorithm.logdir)
            elif self.PER_TRIAL:
                # RLlib algorithms do not see their Tune trial id; the trial's working directory carries its name.
                self._dir = Path(self.RUN_DIR) / Path(algorithm.logdir).name
            else:
                self._dir = Path(self.RUN_DIR)
            record = self._dir / BEST_RECORD
            # A resumed trial keeps its best so far instead of overwriting it with a worse module.
            if record.is_file():
                self._best = json.loads(record.read_text())["log_growth"]
        return self._dir

    def on_train_result(self, *, algorithm, metrics_logger=None, result: dict, **kwargs: Any) -> None:
        started = time.perf_counter()
        run_dir = self._run_dir(algorithm)
        module = algorithm.get_module()
        metrics = validate(Policy(module, self._env.action_map), self._env)
        improved = metrics["log_growth"] > self._best
        if improved:
            self._best = metrics["log_growth"]
            run_dir.mkdir(parents=True, exist_ok=True)
            tmp = run_dir / f".{BEST_MODULE_DIR}.tmp"
            module.save_to_path(str(tmp.resolve()))
            target = run_dir / BEST_MODULE_DIR
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
            record = {**metrics, "training_iteration": result.get("training_iteration"), "env_steps": result.get("num_env_steps_sampled_lifetime")}
            (run_dir / BEST_RECORD).write_text(json.dumps(record, indent=1))
        result["validation"] = {**metrics, "best_log_growth": self._best, "seconds": time.perf_counter() - started}


def with_run_dir(run_dir: str | Path, *, per_trial: bool = False) -> type[ValidationCallback]:
    """A ``ValidationCallback`` that keeps its best module under ``run_dir`` (per Tune trial if ``per_trial``)."""
    attributes = {"RUN_DIR": str(Path(run_dir).resolve()), "PER_TRIAL": per_trial}
    return type("ValidationCallbackInRunDir", (ValidationCallback,), attributes)
