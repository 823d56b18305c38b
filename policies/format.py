"""The exported-policy format, version 6 (docs/architecture.md, "Exported model"):

    models/<agent>/module/          RLModule checkpoint, inference-only (RLModule.from_checkpoint); in an object
                                    store ``module-<hash prefix>/``, the folder ``metadata.json`` names
    models/<agent>/metadata.json    ``ModelMetadata``: agent, algorithm, env config, observation and action specs,
                                    assets, data ranges and hashes, validation metrics, content hash, reproducibility
    models/registry.json            ``Registry``: every agent's headline numbers, the best one by validation, and
                                    the promotion gate's decision (``GateRecord``): what is served by default

``read_metadata`` is the one reader: every problem with a ``metadata.json`` (missing, not JSON, a missing or wrong
field, a format version this code does not read) is one ``DataError`` naming the file and the field. Version 1 (the
mean daily log growth under ``validation.log_growth``) and version 2 (no regime fields) are read and upgraded in
memory, and so are version 3 (the module always in ``module/``), version 4 (no residual base: ``env_config.policy``
defaults to ``base: none``) and version 5 (no ``module``: a flat ``mlp`` whose feature spec is derived from its
``observation``). A model that observes regimes, or tilts ``regime_growth``, carries its regime model in
``env_config.regimes.model``. ``module`` (version 6) records the module's kind and what it observes independently of
its assets (``FeatureSpec``), which is what decides whether it can allocate other assets (``policies.transfer``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from core.errors import DataError
from core.records import Record
from core.storage import Location
from envs.config import EnvConfig
from policies.module_spec import ModuleSpec, derived_module

FORMAT_VERSION = 6
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6)
MODULE_DIR = "module"
METADATA = "metadata.json"
REGISTRY = "registry.json"
SELECTION_METRIC = "mean_daily_log_growth"  # the validation metric that selects modules and ranks the registry


class SplitRange(Record):
    first: str
    last: str
    days: int = Field(ge=1)


class DataRecord(Record):
    source: str = Field(description="the CSV's path, or the built-in market's name")
    fingerprint: str = Field(
        description="SHA-256 of dates, closes and asset names (envs.market.MarketData.fingerprint)"
    )
    file_sha256: str | None = Field(description="SHA-256 of the CSV file; null for the built-in market")
    train: SplitRange
    validation: SplitRange


class ObservationSpec(Record):
    size: int = Field(ge=1)
    window_days: int = Field(ge=0)
    vol_window_days: int = Field(ge=2)
    log_volatility: bool = False
    extras: list[str]
    n_regimes: int = Field(default=0, ge=0, description="regime probabilities observed (0: none)")
    regime_window_days: int = Field(default=0, ge=0, description="days of returns the regime filter runs over")
    base: str = Field(default="none", description="the residual base whose weights are observed before the held ones")
    names: list[str]


class ActionSpec(Record):
    mode: Literal["continuous", "discrete"]
    map: str
    grid_steps: int = Field(ge=1)
    discrete: Literal["grid", "factored"] = Field(
        default="grid", description="discrete mode: one action per grid point, or one level per asset (factored)"
    )
    factored_levels: int | None = Field(default=None, ge=2, description="levels per asset of factored actions")


class Reproducibility(Record):
    seed: int
    resolved_config: dict[str, Any] = Field(description="the TrainConfig the module was trained with, as JSON")
    git_commit: str | None
    versions: dict[str, str]


class SweepRecord(Record):
    name: str
    trial_id: str
    n_trials: int = Field(ge=1, description="trials behind this agent (for the deflated Sharpe ratio)")
    params: dict[str, Any]


class TrainingRecord(Record):
    env_steps: int = Field(ge=0)
    seconds: float | None
    env_steps_per_second: float | None


class ModelMetadata(Record):
    """``models/<agent>/metadata.json``."""

    format_version: int
    agent: str = Field(min_length=1)
    algorithm: Literal["dqn", "sac", "ppo"]
    created_at: str
    assets: list[str] = Field(min_length=1)
    env_config: EnvConfig
    observation: ObservationSpec
    module: ModuleSpec = Field(description="the module's kind and what it observes, whatever its assets")
    action: ActionSpec
    data: DataRecord
    validation: dict[str, float] = Field(
        description=f"validation metrics of the exported module ({SELECTION_METRIC}, ...)"
    )
    source_checkpoint: str
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 over the module folder's files")
    module_dir: str = Field(
        default=MODULE_DIR,
        pattern=r"^module(-[0-9a-f]{12})?$",
        description="the module's folder beside this file: module, or module-<hash prefix> in an object store, where "
        "a new module is uploaded beside the old one and this file, written last, switches to it",
    )
    reproducibility: Reproducibility
    sweep: SweepRecord | None = None
    training: TrainingRecord | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("format_version") == 1:
            validation = dict(raw.get("validation") or {})
            if "log_growth" in validation:
                validation[SELECTION_METRIC] = validation.pop("log_growth")
            raw = {**raw, "format_version": 2, "validation": validation}
        if isinstance(raw, dict) and raw.get("format_version") in (2, 3, 4):
            # version 3 added optional regime fields, version 4 the optional module_dir, version 5 the residual base
            raw = {**raw, "format_version": 5}
        if isinstance(raw, dict) and raw.get("format_version") == 5:
            # version 6 records the module's kind and feature spec; every earlier module was a flat mlp
            module = raw.get("module") or derived_module(raw)
            raw = {**raw, "format_version": FORMAT_VERSION, **({} if module is None else {"module": module})}
        return raw

    @field_validator("format_version")
    @classmethod
    def _readable(cls, version: int) -> int:
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"version {version} is not one this code reads ({', '.join(map(str, READABLE_VERSIONS))}); "
                "re-export the model with this version, or upgrade rlportfolio"
            )
        return version

    @model_validator(mode="after")
    def _regimes_travel_with_the_model(self) -> ModelMetadata:
        if self.env_config.observe_regimes and self.env_config.regimes.model is None:
            raise ValueError(
                "env_config.regimes.model is missing, but the model observes regimes (env_config.observe_regimes): "
                "it was exported without its regime parameters and cannot be served or evaluated; re-export it"
            )
        if self.env_config.base_needs_regimes and self.env_config.regimes.model is None:
            raise ValueError(
                f"agent '{self.agent}': its base '{self.env_config.policy.base}' filters with a fitted regime model, "
                "and env_config.regimes.model is missing: the base cannot be computed; re-export it"
            )
        return self

    @model_validator(mode="after")
    def _module_fits_the_observation(self) -> ModelMetadata:
        size = self.module.features.asset_layout.size(len(self.assets))
        if size != self.observation.size:
            raise ValueError(
                f"module.features.layout gives {size} numbers over the {len(self.assets)} assets, but "
                f"observation.size is {self.observation.size}: the two specs disagree"
            )
        return self

    @property
    def closes_needed(self) -> int:
        """Closes per asset the agent needs to decide once: its feature warm-up plus the day itself."""
        return self.env_config.warmup_days + 1

    @property
    def model_version(self) -> str:
        return self.content_hash[:12]


class RegistryEntry(Record):
    algorithm: str
    content_hash: str
    created_at: str
    validation: dict[str, float]


class GateEntry(Record):
    """One candidate's paired comparison with the gate's baseline on validation (mean daily log growth)."""

    name: str
    kind: Literal["agent", "baseline"]
    difference: float = Field(description="mean daily log growth minus the gate baseline's, same days and costs")
    lower: float = Field(description="lower end of the interval, widened for the number of candidates")
    upper: float
    stderr: float
    daily_std: float | None = Field(
        default=None,
        description="standard deviation of the daily paired difference across validation days (path-days on law "
        "paths): with difference and days, the distribution a served agent's live behaviour is tested against "
        "(experiments.consistency); null in records written before it was kept",
    )
    days: int | None = Field(default=None, description="validation days (path-days) the difference was measured over")
    daily_std_band: tuple[float, float] | None = Field(
        default=None,
        description="1st and 99th percentiles of the daily difference's spread over validation's 20-day windows: "
        "how far it moves with the market's regime",
    )
    model_version: str | None = Field(default=None, description="an agent's exported model the entry is for")


class GateRecord(Record):
    """The promotion gate's decision (``training.gate``): an agent is promoted only if its difference over
    ``baseline`` has ``lower > 0``; else a baseline whose ``lower > 0`` (the best), else ``baseline`` itself."""

    baseline: str
    alpha: float
    candidates: int = Field(
        ge=1, description="comparisons the interval is widened for (Bonferroni), sweep trials included"
    )
    z: float = Field(description="the widened normal quantile: interval = difference ± z · stderr")
    method: str = Field(description="how validation was resampled: fresh law paths or a stationary block bootstrap")
    validation: str = Field(description="the validation data: dates or paths")
    entries: list[GateEntry]
    promoted: str
    promoted_kind: Literal["agent", "baseline"]
    reason: str = Field(description="one sentence: what was promoted and why")
    regime_trade_rate: float | None = Field(
        default=None, description="regime_growth's partial-adjustment rate, chosen on validation"
    )
    decided_at: str


class Registry(Record):
    """``models/registry.json``: every agent's headline numbers; ``best`` has the highest ``metric``; ``promoted``
    is what the gate decides to serve by default (an agent or a baseline), ``None`` until a gate has run on these
    exports (an export clears it)."""

    metric: str
    best: str | None
    agents: dict[str, RegistryEntry]
    promoted: str | None = None
    gate: GateRecord | None = None


def agent_dirs(models_dir: str | Path | Location) -> list[Location]:
    """Exported agents under ``models_dir``, a folder or a storage URI (folders with ``metadata.json``; in-progress
    ``.tmp``/``.old`` folders, and folders whose metadata was not written yet, excluded)."""
    where = Location.of(models_dir)
    try:
        return [child for child in where.children() if not child.name.startswith(".") and (child / METADATA).is_file()]
    except OSError as exc:  # permissions, an unreachable endpoint, a missing bucket
        raise DataError(f"{where}: cannot be listed ({exc})") from None


def read_metadata(agent_dir: str | Path | Location) -> ModelMetadata:
    """The agent folder's ``metadata.json`` (a folder or a storage URI), checked.

    :raises DataError: naming the file, and the field where one is wrong.
    """
    path = Location.of(agent_dir) / METADATA
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"{agent_dir}: not an exported policy (no {METADATA})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    try:
        return ModelMetadata.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '(top level)'}': {err['msg']}" for err in exc.errors()
        )
        raise DataError(f"{path}: {problems}") from None


def content_hash(module_dir: Path) -> str:
    """SHA-256 over every file of the module folder (relative path and bytes, in sorted order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(module_dir).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(module_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def read_registry(models_dir: str | Path | Location) -> Registry | None:
    """``models_dir/registry.json``, or ``None`` where there is none yet.

    :raises DataError: it exists but cannot be read as a ``Registry`` (naming the file)."""
    path = Location.of(models_dir) / REGISTRY
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    try:
        return Registry.model_validate_json(text)
    except ValidationError as exc:
        raise DataError(f"{path}: not a registry ({exc.errors()[0]['msg']})") from None
