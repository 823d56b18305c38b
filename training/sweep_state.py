"""What a sweep keeps on disk, so that ``--resume`` can always finish it.

    <storage_path>/<name>/sweep.json      the plan, written before the first trial: resolved configs, data, algorithms
    <storage_path>/<name>/summary.json    rewritten after every algorithm: its trials, configurations, exported model
    <storage_path>/<name>/sweep.log       every progress line and warning, with times
    <storage_path>/<name>/<algo>/         Tune's experiment (trial results, checkpoints, TensorBoard event files)
    <storage_path>/<name>/best_modules/   each trial's best module by validation log growth

A sweep is named ``<config name>-<data>-<YYYYmmdd-HHMMSS>`` (or ``--name``), so sweeps on different data or at
different times never share a folder. ``--resume`` reads the plan, not the YAML files (which may have changed since).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from core.errors import ConfigError
from core.records import Record
from training.config import TrainConfig
from training.sweep_config import SweepConfig

PLAN = "sweep.json"
SUMMARY = "summary.json"
LOG = "sweep.log"


class SweepPlan(Record):
    """``sweep.json``: everything a resumed sweep needs, fixed when the sweep starts."""

    name: str
    created_at: str
    config_file: str
    data: str | None = None  # --data (a CSV); None: what the algorithm configs name
    data_label: str  # envs.sources.describe_data of the data trained on
    algos: list[str]
    sweep: SweepConfig
    bases: dict[str, TrainConfig]

    @field_validator("bases", mode="before")
    @classmethod
    def _replay_of_older_plans(cls, bases: Any) -> Any:
        """Plans written before ``TrainConfig.replay`` existed ran RLlib's buffers: resume them with those (Tune
        restores only into the trainable class the experiment started with)."""
        if isinstance(bases, dict):
            return {
                algo: {**base, "replay": "rllib"} if isinstance(base, dict) and "replay" not in base else base
                for algo, base in bases.items()
            }
        return bases


class TrialSummary(Record):
    trial_dir: str
    trial_id: str | None = None
    seed: int | None = None
    params: dict[str, Any] = {}
    best_validation: float | None = Field(
        default=None,
        description="the validation mean daily log growth of the module the trial kept (TrainConfig.selection)",
    )
    env_steps: int | None = None
    seconds: float | None = None
    iterations: int | None = None
    error: str | None = None


class ConfigurationSummary(Record):
    """One sampled configuration over its seeds."""

    params: dict[str, Any]
    seeds: int
    validation_mean: float = Field(description="mean over seeds of each trial's best validation mean daily log growth")
    validation_std: float | None = Field(description="their standard deviation (ddof 1); null for one seed")
    trials: list[str]


class AlgoSummary(Record):
    algo: str
    n_trials: int
    configurations: list[ConfigurationSummary]
    trials: list[TrialSummary]
    best_trial: TrialSummary | None
    exported: str | None = None


class SweepSummary(Record):
    """``summary.json``."""

    name: str
    data: str
    complete: bool = Field(description="every planned algorithm is summarised")
    seconds: float
    models_dir: str
    exported: dict[str, str | None]
    algos: dict[str, AlgoSummary]


def sweep_name(prefix: str, data_tag: str, now: dt.datetime | None = None) -> str:
    return f"{prefix}-{data_tag}-{(now or dt.datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def sweep_dir(storage_path: str | Path, name: str) -> Path:
    return Path(storage_path).resolve() / name


def write_plan(plan: SweepPlan) -> Path:
    folder = sweep_dir(plan.sweep.storage_path, plan.name)
    if (folder / PLAN).exists():
        raise ConfigError(
            f"--name: a sweep named '{plan.name}' exists at {folder}; continue it with --resume {plan.name}, or pick another name"
        )
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / PLAN, plan.model_dump(mode="json"))
    return folder


def read_plan(folder: Path) -> SweepPlan:
    path = folder / PLAN
    try:
        return SweepPlan.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--resume: no sweep to resume at {folder} (no {PLAN})") from None
    except ValueError as exc:
        raise ConfigError(
            f"--resume: {path} is not a sweep plan this version can read ({str(exc).splitlines()[0]})"
        ) from None


def find_sweep(storage_path: str | Path, which: str) -> Path:
    """The folder of the sweep to resume: ``latest`` (by start time) under ``storage_path``, a name there, or a path."""
    storage = Path(storage_path).resolve()
    if which == "latest":
        plans = []
        for path in storage.glob(f"*/{PLAN}"):
            try:
                plans.append((json.loads(path.read_text())["created_at"], path.parent))
            except (ValueError, KeyError):
                continue
        if not plans:
            raise ConfigError(f"--resume: no sweep to resume under {storage} (no */{PLAN}); start one without --resume")
        return max(plans)[1]
    candidate = Path(which)
    if (candidate / PLAN).is_file():
        return candidate.resolve()
    return storage / which


def read_summary(folder: Path) -> SweepSummary | None:
    path = folder / SUMMARY
    return SweepSummary.model_validate_json(path.read_text()) if path.is_file() else None


def write_summary(folder: Path, plan: SweepPlan, algos: dict[str, AlgoSummary], seconds: float) -> Path:
    """``summary.json`` for the algorithms finished so far; ``complete`` once every planned one is."""
    summary = SweepSummary(
        name=plan.name,
        data=plan.data_label,
        complete=all(a in algos for a in plan.algos),
        seconds=round(seconds, 1),
        models_dir=str(Path(plan.sweep.models_dir).resolve()),
        exported={a: s.exported for a, s in algos.items()},
        algos=algos,
    )
    _write_json(folder / SUMMARY, summary.model_dump(mode="json"))
    return folder / SUMMARY


def _write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    tmp.replace(path)
