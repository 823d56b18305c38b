"""MLflow tracking for Tune trials: the parameters that define a trial and the metrics people read, in batches.

Tune's stock ``MLflowLoggerCallback`` logs every config key and every result key one SQL transaction at a time
(hundreds per iteration for RLlib), which on a SQLite store costs the driver more CPU than a trial's training. This
subclass keeps its run management and logs a curated set with one ``log_batch`` call per iteration. Its experiment
is set up by ``core.tracking.home_experiment`` first, so a local SQLite store keeps its artifacts beside it
(``mlruns/``), in whichever folder the store is now.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.utils import flatten_dict

from core.tracking import home_experiment

METRIC_PREFIXES = (
    "validation/",
    "env_runners/episode_return_mean",
    "env_runners/episode_len_mean",
    "num_env_steps_sampled_lifetime",
    "time_total_s",
    "time_this_iter_s",
    "training_iteration",
)
PARAM_KEYS = (
    "seed",
    "gamma",
    "lr",
    "actor_lr",
    "critic_lr",
    "alpha_lr",
    "train_batch_size_per_learner",
    "minibatch_size",
    "num_epochs",
    "entropy_coeff",
    "lambda",
    "tau",
    "target_network_update_freq",
    "n_step",
    "double_q",
    "dueling",
)


def select_metrics(result: dict[str, Any], prefixes: Iterable[str] = METRIC_PREFIXES) -> dict[str, float]:
    flat = flatten_dict(result, delimiter="/")
    return {
        key: float(value)
        for key, value in flat.items()
        if any(key.startswith(p) for p in prefixes) and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def select_params(config: dict[str, Any], extra_keys: Iterable[str] = ()) -> dict[str, str]:
    params = {key: config[key] for key in (*PARAM_KEYS, *extra_keys) if key in config}
    env = config.get("env_config") or {}
    params.update({f"env/{key}": value for key, value in flatten_dict(env, delimiter="/").items()})
    model = config.get("model_config") or {}
    if "fcnet_hiddens" in model:
        params["model/hidden"] = model["fcnet_hiddens"]
    return {key: str(value)[:500] for key, value in params.items()}


class CuratedMLflowLoggerCallback(MLflowLoggerCallback):
    """``MLflowLoggerCallback`` that logs ``select_params`` once and ``select_metrics`` per iteration, batched."""

    def __init__(self, *args: Any, param_keys: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._param_keys = tuple(param_keys)

    def setup(self, *args: Any, **kwargs: Any) -> None:
        home_experiment(self.tracking_uri, self.experiment_name)
        super().setup(*args, **kwargs)

    def log_trial_start(self, trial) -> None:
        from mlflow.entities import Param

        if trial in self._trial_runs:
            return
        # A trial resumed after a crash (--resume) continues its run instead of opening a second one.
        earlier = self._client().search_runs(
            [self.mlflow_util.experiment_id], filter_string=f"tags.trial_id = '{trial.trial_id}'", max_results=1
        )
        if earlier:
            self._trial_runs[trial] = earlier[0].info.run_id
            return
        tags = {**self.tags, "trial_name": str(trial), "trial_id": trial.trial_id}
        run = self.mlflow_util.start_run(tags=tags, run_name=str(trial))
        self._trial_runs[trial] = run.info.run_id
        params = select_params(trial.config, self._param_keys)
        self._client().log_batch(self._trial_runs[trial], params=[Param(k, v) for k, v in params.items()])

    def log_trial_result(self, iteration: int, trial, result: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        step = int(result.get("num_env_steps_sampled_lifetime") or result.get("training_iteration") or iteration)
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in select_metrics(result).items()]
        self._client().log_batch(self._trial_runs[trial], metrics=metrics)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        self.mlflow_util.end_run(run_id=self._trial_runs[trial], status="FAILED" if failed else "FINISHED")

    def _client(self):
        return self.mlflow_util._get_client()
