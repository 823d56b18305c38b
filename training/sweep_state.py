"""What a sweep keeps on disk, so that ``--resume`` can always finish it.

    <storage_path>/<name>/sweep.json      the plan, written before the first trial: resolved configs, data, algorithms
    <storage_path>/<name>/summary.json    rewritten after every algorithm: its trials, configurations, exported model
    <storage_path>/<name>/sweep.log       every progress line and warning, with times
    <storage_path>/<name>/<algo>/         Tune's experiment (trial results, checkpoints, TensorBoard event files)
    <storage_path>/<name>/best_modules/   each trial's best module by validation log growth

A sweep is named ``<config name>-<data>-<YYYYmmdd-HHMMSS>`` (or ``--name``), so sweeps on different data or at
different times never share a folder. ``--resume`` reads the plan, not the YAML files (which may have changed since).
``storage_path`` may be a storage URI (``s3://bucket/sweeps``, ``core.storage``): every node then reads and writes
the same sweep, and a resumed trial finds its checkpoints and best module wherever it runs.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from core.errors import ConfigError, DataError
from core.records import Record
from core.storage import Location
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
    node_id: str | None = Field(default=None, description="the Ray node the trial's last iteration ran on")
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
    promoted: str | None = Field(default=None, description="what the promotion gate serves by default")
    gate: str | None = Field(default=None, description="the gate's decision in one sentence")


def sweep_name(prefix: str, data_tag: str, now: dt.datetime | None = None) -> str:
    return f"{prefix}-{data_tag}-{(now or dt.datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def sweep_dir(storage_path: str | Path, name: str) -> Location:
    return Location.of(storage_path) / name


def write_plan(plan: SweepPlan) -> Location:
    folder = sweep_dir(plan.sweep.storage_path, plan.name)
    if (folder / PLAN).exists():
        raise ConfigError(
            f"--name: a sweep named '{plan.name}' exists at {folder}; continue it with --resume {plan.name}, or pick another name"
        )
    folder.mkdir()
    _write_json(folder / PLAN, plan.model_dump(mode="json"))
    return folder


def read_plan(folder: Location) -> SweepPlan:
    path = folder / PLAN
    try:
        return SweepPlan.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--resume: no sweep to resume at {folder} (no {PLAN})") from None
    except OSError as exc:  # denied, unreachable
        raise DataError(f"--resume: {path} cannot be read ({exc})") from None
    except ValueError as exc:
        raise ConfigError(
            f"--resume: {path} is not a sweep plan this version can read ({str(exc).splitlines()[0]})"
        ) from None


def find_sweep(storage_path: str | Path, which: str) -> Location:
    """The folder of the sweep to resume: ``latest`` (by start time) under ``storage_path``, a name there, or a path
    or URI."""
    storage = Location.of(storage_path)
    if which == "latest":
        plans = []
        for folder in storage.children():
            try:
                plans.append((json.loads((folder / PLAN).read_text())["created_at"], folder.uri, folder))
            except (OSError, ValueError, KeyError):  # not a sweep folder (no plan), or an unreadable one
                continue
        if not plans:
            raise ConfigError(f"--resume: no sweep to resume under {storage} (no */{PLAN}); start one without --resume")
        return max(plans)[2]
    candidate = Location.of(which)
    if (candidate / PLAN).is_file():
        return candidate
    return storage / which


def read_summary(folder: Location) -> SweepSummary | None:
    path = folder / SUMMARY
    return SweepSummary.model_validate_json(path.read_text()) if path.is_file() else None


def write_summary(
    folder: Location, plan: SweepPlan, algos: dict[str, AlgoSummary], seconds: float, gate: Any = None
) -> Location:
    """``summary.json`` for the algorithms finished so far; ``complete`` once every planned one is; ``gate``: the
    promotion gate's ``GateRecord``, once it ran."""
    summary = SweepSummary(
        name=plan.name,
        data=plan.data_label,
        complete=all(a in algos for a in plan.algos),
        seconds=round(seconds, 1),
        models_dir=Location.of(plan.sweep.models_dir).uri,
        exported={a: s.exported for a, s in algos.items()},
        algos=algos,
        promoted=None if gate is None else gate.promoted,
        gate=None if gate is None else gate.reason,
    )
    _write_json(folder / SUMMARY, summary.model_dump(mode="json"))
    return folder / SUMMARY


def local_log(folder: Location) -> Path:
    """The file the sweep logs to: ``sweep.log`` in a local sweep folder; for remote storage a local copy (carrying
    on from the stored one after a resume), stored with every summary (``store_log``)."""
    if folder.is_local:
        return folder.local_path / LOG
    local = Path(tempfile.gettempdir()) / "rlportfolio-sweeps" / folder.name / LOG
    local.parent.mkdir(parents=True, exist_ok=True)
    stored = folder / LOG
    if stored.is_file():  # the sweep's log so far, wherever it last ran
        local.write_bytes(stored.read_bytes())
    return local


def store_log(folder: Location, local: Path) -> None:
    if not folder.is_local and local.is_file():
        (folder / LOG).write_text(local.read_text())


def _write_json(path: Location, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=1, default=str))
