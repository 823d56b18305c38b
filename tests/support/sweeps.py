"""Sweep configs sized for tests (seconds per trial) and the command line that runs them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from tests.support.markets import FAST_ENV, FAST_GATE, FAST_HYPERPARAMETERS
from tests.support.paths import REPO_ROOT


def write_algo_config(tmp_path: Path, algo: str, data: Path) -> Path:
    raw = yaml.safe_load((REPO_ROOT / "configs" / f"{algo}.yaml").read_text())
    raw["env"] = {**raw.get("env", {}), **FAST_ENV, "data": {"path": str(data)}}
    raw["hyperparameters"] = {**raw["hyperparameters"], **FAST_HYPERPARAMETERS[algo]}
    raw["model"] = {"hidden": [16, 16]}
    raw["env_config_path"] = str(REPO_ROOT / "configs" / "env.yaml")
    path = tmp_path / f"{algo}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def write_sweep(tmp_path: Path, data: Path, *, algos: dict, num_samples: int, concurrent: int, seeds=(0,)) -> Path:
    sweep = {
        "name": "t",
        "storage_path": str(tmp_path / "sweeps"),
        "models_dir": str(tmp_path / "models"),
        "num_samples": num_samples,
        "seeds": list(seeds),
        "max_concurrent_trials": concurrent,
        "num_cpus": 2,
        "checkpoint_every_iterations": 1,
        "asha": {"grace_period_steps": 100_000},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "test"},
        "gate": FAST_GATE,
        "algos": {
            algo: {
                "config": str(write_algo_config(tmp_path, algo, data)),
                "timesteps": steps,
                "search_space": {"lr": {"loguniform": [1e-4, 1e-3]}},
            }
            for algo, steps in algos.items()
        },
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))  # algorithms run in the order written
    return path


def sweep_command(config: Path, *extra: str) -> list[str]:
    """A new sweep named ``t`` (``--name``), or with ``--resume`` in ``extra``, the latest one continued."""
    name = [] if "--resume" in extra else ["--name", "t"]
    return [sys.executable, "-m", "training.sweep", "--config", str(config), "--no-dashboard", *name, *extra]


def run_env() -> dict:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
