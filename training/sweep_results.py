"""What a finished Tune experiment of a sweep yields: its trials summarised per configuration over seeds
(``AlgoSummary``), the best trial's module exported, and the table printed for it."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.storage import Location
from core.tracking import home_experiment, mlflow_uri
from training.progress import STEPS
from training.sweep_config import SweepConfig
from training.sweep_state import (
    AlgoSummary,
    ConfigurationSummary,
    SweepPlan,
    TrialSummary,
)


def _config_key(config: dict[str, Any], search_keys: Sequence[str]) -> tuple:
    values = []
    for key in search_keys:
        value = config["env_config"].get(key[4:]) if key.startswith("env.") else config.get(key)
        values.append(json.dumps(value, sort_keys=True, default=str))
    return tuple(values)


def summarize_trials(result_grid: Any, sweep: SweepConfig, algo: str) -> AlgoSummary:
    """Per-configuration mean and spread over seeds, and the best trial, for one algorithm."""
    search_keys = list(sweep.algos[algo].search_space)
    groups: dict[tuple, dict[str, Any]] = {}
    trials = []
    for result in result_grid:
        if result.error or not result.metrics or not result.config:
            error = str(result.error) if result.error else "reported no result"
            trials.append(TrialSummary(trial_dir=Path(result.path).name, error=error[:300]))
            continue
        metrics = result.metrics
        params = {
            k: (result.config["env_config"].get(k[4:]) if k.startswith("env.") else result.config.get(k))
            for k in search_keys
        }
        trial = TrialSummary(
            trial_dir=Path(result.path).name,
            trial_id=metrics["trial_id"],
            seed=result.config.get("seed"),
            params=params,
            best_validation=selected_validation(metrics.get("validation", {})),
            env_steps=metrics.get(STEPS),
            seconds=metrics.get("time_total_s"),
            iterations=metrics.get("training_iteration"),
            node_id=metrics.get("node_id"),
        )
        trials.append(trial)
        group = groups.setdefault(
            _config_key(result.config, search_keys), {"params": params, "values": [], "trials": []}
        )
        group["values"].append(trial.best_validation)
        group["trials"].append(trial.trial_id)
    configurations = []
    for group in groups.values():
        values = np.asarray(group["values"], dtype=float)
        configurations.append(
            ConfigurationSummary(
                params=group["params"],
                seeds=len(values),
                validation_mean=float(values.mean()),
                validation_std=float(values.std(ddof=1)) if len(values) > 1 else None,
                trials=group["trials"],
            )
        )
    configurations.sort(key=lambda c: c.validation_mean, reverse=True)
    ok = [t for t in trials if t.error is None and t.best_validation is not None]
    best_trial = max(ok, key=lambda t: t.best_validation) if ok else None
    return AlgoSummary(
        algo=algo, n_trials=len(trials), configurations=configurations, trials=trials, best_trial=best_trial
    )


def selected_validation(validation: dict) -> float | None:
    """The validation score of the module a trial kept (``TrainConfig.selection``); results written before the
    selection rule existed name only the best score, which was then the kept module's."""
    return validation.get("selected_mean_daily_log_growth", validation.get("best_mean_daily_log_growth"))


def export_best(summary: AlgoSummary, plan: SweepPlan, folder: Location, algo: str) -> str | None:
    """Export the best trial's best module to ``<models_dir>/<algo>`` (a folder or a storage URI) and log it to that
    trial's MLflow run; where the exported model is (an absolute path or a URI)."""
    from envs.portfolio_env import PortfolioEnv
    from policies.export import export_policy
    from policies.load import local_copy
    from training.validation import BEST_RECORD, kept_module

    best = summary.best_trial
    if best is None:
        return None
    sweep, base = plan.sweep, plan.bases[algo]
    trial_dir = folder / "best_modules" / algo / best.trial_dir
    record = json.loads((trial_dir / BEST_RECORD).read_text())
    env_config = base.env.model_copy(update={k[4:]: v for k, v in best.params.items() if k.startswith("env.")})
    env = PortfolioEnv(env_config)
    resolved = base.model_dump(mode="json")
    resolved["hyperparameters"] = base.hyperparameters | {
        k: v for k, v in best.params.items() if not k.startswith("env.")
    }
    resolved["env"] = env_config.model_dump(mode="json")
    resolved["seed"] = best.seed
    module = kept_module(trial_dir)
    with tempfile.TemporaryDirectory(prefix="rlportfolio-best-") as local:
        agent_dir = export_policy(
            module.local_path if module.is_local else module.download(Path(local) / module.name),
            sweep.models_dir,
            agent=algo,
            algorithm=algo,
            env_config=env_config,
            market=env.market,
            splits=env.splits,
            validation={k: v for k, v in record.items() if isinstance(v, (int, float))},
            source_checkpoint=str(trial_dir),
            seed=best.seed,
            resolved_config=resolved,
            extra={
                "sweep": {
                    "name": plan.name,
                    "trial_id": best.trial_id,
                    "n_trials": summary.n_trials,
                    "params": best.params,
                },
                "training": {
                    "env_steps": best.env_steps,
                    "seconds": best.seconds,
                    "env_steps_per_second": round(best.env_steps / best.seconds, 1) if best.seconds else None,
                },
            },
        )
    _log_artifact(sweep, best.trial_id, local_copy(agent_dir), agent_dir)
    return agent_dir.uri


def _log_artifact(sweep: SweepConfig, trial_id: str, local_dir: Path, agent_dir: Location) -> None:
    from mlflow.tracking import MlflowClient

    # The store may have moved since the trial's run was created (a copied checkout): its files go beside it now.
    experiment_id = home_experiment(sweep.mlflow.tracking_uri, sweep.mlflow.experiment)
    client = MlflowClient(tracking_uri=mlflow_uri(sweep.mlflow.tracking_uri))
    runs = client.search_runs([experiment_id], filter_string=f"tags.trial_id = '{trial_id}'")
    if runs:
        client.log_artifacts(runs[0].info.run_id, str(local_dir), artifact_path="policy")
        client.set_tag(runs[0].info.run_id, "exported_to", agent_dir.uri)


def results_table(summary: AlgoSummary) -> str:
    """One algorithm's configurations (mean and spread of best validation log growth over seeds) and best trial."""
    lines = [
        f"\n{summary.algo.upper()}: {summary.n_trials} trials",
        f"  {'mean val log growth':>20} {'std':>10} {'seeds':>5}  params",
    ]
    for c in summary.configurations:
        std = "-" if c.validation_std is None else f"{c.validation_std:.6f}"
        lines.append(f"  {c.validation_mean:>+20.6f} {std:>10} {c.seeds:>5}  {json.dumps(c.params, default=str)}")
    best = summary.best_trial
    if best:
        lines.append(f"  best trial {best.trial_id} (seed {best.seed}): {best.best_validation:+.6f} per day")
    return "\n".join(lines)
