"""The promotion gate: what the platform serves by default, decided on validation (docs/architecture.md, "Promotion
gate").

Every exported agent and every routable baseline plays validation on the same days with the same costs; each is
compared with the gate's baseline (``equal_weight`` by default) by the paired difference in mean daily log growth.
An agent is promoted only if the lower end of that difference's interval, widened for every comparison made
(Bonferroni over the sweep's trials and the other baselines), is above zero; otherwise the best baseline whose lower
end is; otherwise the gate's baseline itself. Validation never promotes what it cannot tell from 1/N.

Pairs: on a synthetic market whose agents validated on law paths, ``paths`` fresh law paths (seeds of their own,
not the ones that selected the modules); on real data the validation days, with the mean's standard error from a
stationary block bootstrap (Politis and Romano 1994, ``arch``). The decision is written to ``registry.json``
(``policies.format.GateRecord``) only once it is made: a gate that fails writes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from core.config import FrozenConfig
from core.errors import ConfigError, DataError
from core.storage import Location
from envs.config import EnvConfig
from policies.format import GateEntry, GateRecord
from quant.registry import ROUTABLE

log = logging.getLogger(__name__)


class GateConfig(FrozenConfig):
    """The promotion gate's settings (``gate:`` in an algorithm's YAML or the sweep's)."""

    enabled: bool = Field(default=True, description="run the gate after training; off: promote nothing")
    baseline: str = Field(default="equal_weight", description="what an agent must beat beyond luck")
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5, description="1 - the intervals' coverage, before widening")
    baselines: tuple[str, ...] = Field(default=ROUTABLE, description="the baselines that compete with the agents")
    bootstrap_block_days: float = Field(default=20.0, ge=1.0, description="real data: mean bootstrap block length")
    resamples: int = Field(default=2000, ge=100, le=100_000, description="real data: bootstrap resamples")
    min_days: int = Field(default=60, ge=10, description="the fewest validation days the gate decides on")
    paths: int = Field(default=100, ge=2, le=10_000, description="synthetic law: fresh paths every candidate plays")
    estimated_paths: int = Field(
        default=10,
        ge=2,
        description="paths the estimated baselines play (skfolio refits are slow), paired the same way",
    )
    seed: int = 0

    @field_validator("baseline")
    @classmethod
    def _routable(cls, value: str) -> str:
        if value not in ROUTABLE:
            raise ValueError(f"unknown or unroutable gate baseline '{value}'; choose from {list(ROUTABLE)}")
        return value

    @field_validator("baselines")
    @classmethod
    def _all_routable(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in values if v not in ROUTABLE]
        if unknown:
            raise ValueError(f"unknown or unroutable baseline(s) {unknown}; choose from {list(ROUTABLE)}")
        return values


@dataclass(frozen=True)
class Paired:
    """One candidate against the gate's baseline: the mean paired difference and its standard error."""

    name: str
    kind: str  # "agent" or "baseline"
    difference: float
    stderr: float
    daily_std: float = 0.0  # of the daily difference across every validation path-day
    days: int = 0
    std_band: tuple[float, float] | None = None  # 1st and 99th percentiles of its spread over 20-day windows


def widened_z(alpha: float, comparisons: int) -> float:
    """The two-sided normal quantile for ``comparisons`` intervals that hold together with probability ``1 - alpha``
    (Bonferroni)."""
    from scipy.stats import norm

    return float(norm.ppf(1.0 - alpha / (2.0 * max(comparisons, 1))))


def decide(pairs: list[Paired], config: GateConfig, comparisons: int) -> tuple[list[GateEntry], str, str, str]:
    """Entries, the promoted name, its kind and the one-sentence reason (pure: the rule of the module docstring)."""
    z = widened_z(config.alpha, comparisons)
    entries = [
        GateEntry(
            name=p.name,
            kind=p.kind,
            difference=p.difference,
            lower=p.difference - z * p.stderr,
            upper=p.difference + z * p.stderr,
            stderr=p.stderr,
            daily_std=p.daily_std,
            days=p.days,
            daily_std_band=p.std_band,
        )
        for p in pairs
    ]
    agents = sorted((e for e in entries if e.kind == "agent"), key=lambda e: e.difference, reverse=True)
    baselines = sorted((e for e in entries if e.kind == "baseline"), key=lambda e: e.difference, reverse=True)
    base = config.baseline

    def said(e: GateEntry) -> str:
        return f"{e.name} {1e4 * e.difference:+.2f} bp/day [{1e4 * e.lower:+.2f}, {1e4 * e.upper:+.2f}]"

    widened = f"95% interval widened for {comparisons} comparisons"
    passing = [e for e in agents if e.lower > 0]
    if passing:
        best = passing[0]
        return entries, best.name, "agent", f"{said(best)} over {base} on validation ({widened}): agent promoted"
    best_agent = f"best agent {said(agents[0])}" if agents else "no agent"
    passing = [e for e in baselines if e.lower > 0]
    if passing:
        best = passing[0]
        reason = (
            f"no agent beat {base} beyond luck on validation ({best_agent}); serving the best baseline that did, "
            f"{said(best)} ({widened})"
        )
        return entries, best.name, "baseline", reason
    reason = f"neither an agent nor a baseline beat {base} beyond luck on validation ({best_agent}; {widened}); serving {base}"
    return entries, base, "baseline", reason


def bootstrap_stderr(differences: np.ndarray, config: GateConfig) -> float:
    """Standard error of the mean of a daily series by a stationary block bootstrap (``arch``)."""
    from arch.bootstrap import StationaryBootstrap

    bootstrap = StationaryBootstrap(config.bootstrap_block_days, differences, seed=config.seed)
    means = bootstrap.apply(np.mean, config.resamples)
    return float(np.std(means, ddof=1))


def paired(name: str, kind: str, candidate: np.ndarray, reference: np.ndarray, config: GateConfig) -> Paired:
    """``candidate`` and ``reference``: ``(P, S)`` daily log growth on the same ``P`` paths (``P == 1``: the
    validation days, bootstrapped) and ``S`` days."""
    if candidate.shape != reference.shape:
        raise RuntimeError(f"gate: '{name}' played {candidate.shape} days, the baseline {reference.shape}")
    daily = candidate - reference
    per_path = daily.mean(axis=1)
    if len(per_path) > 1:
        stderr = float(per_path.std(ddof=1) / np.sqrt(len(per_path)))
    else:
        stderr = bootstrap_stderr(daily[0], config)
    return Paired(
        name, kind, float(per_path.mean()), stderr, float(daily.std(ddof=1)), int(daily.size), window_spreads(daily)
    )


def window_spreads(daily: np.ndarray, window: int = 20, step: int = 5) -> tuple[float, float] | None:
    """The 1st and 99th percentiles of the daily difference's spread over ``window``-day windows of every path
    (``(P, S)``): how far a good agent's tracking spread moves with the market's regime, the band a live agent is
    held to (``experiments.consistency``); None when a path is shorter than a window."""
    if daily.shape[1] < window:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(daily, window, axis=1)[:, ::step]
    spreads = windows.std(axis=-1, ddof=1).ravel()
    low, high = np.quantile(spreads, [0.01, 0.99])
    return float(low), float(high)


def check_gate_data(env_config: EnvConfig, config: GateConfig, days: int | None = None) -> None:
    """Before Ray starts: the validation split must be long enough for the gate (``gate.min_days``).

    :param days: the validation split's days, where the caller has them (an env it built); else computed here.
    :raises ConfigError: naming ``gate.min_days`` and the data."""
    from backtesting.backtest import evaluation_env

    if not config.enabled:
        return
    if days is None:
        days = evaluation_env(env_config, "validation").n_steps
    if days < config.min_days:
        raise ConfigError(
            f"gate.min_days: the validation split of {env_config.data.path or 'the built-in market'} has {days} days, "
            f"fewer than the {config.min_days} the promotion gate decides on (too short to bootstrap); lengthen it "
            "(data.validation_end) or lower gate.min_days"
        )


def run_gate(models_dir: str | Path | Location, config: GateConfig, n_trials: int = 1) -> GateRecord:
    """Decide what ``models_dir``'s agents and the baselines earn on validation, record it in ``registry.json``
    (``promoted``, ``gate``) and return it.

    :param n_trials: the trials the agents were selected from (a sweep's), counted in the widening.
    :raises DataError: no exported agents, or one that cannot be loaded; :raises ConfigError: agents of different
        data, or validation shorter than ``gate.min_days``.
    """
    from policies.export import update_registry
    from policies.format import agent_dirs
    from policies.load import load_policy

    loaded = {d.name: load_policy(d) for d in agent_dirs(models_dir)}
    if not loaded:
        raise DataError(f"{models_dir}: no exported agents for the promotion gate")
    record = gate_decision(
        {name: (policy, meta.env_config) for name, (policy, meta) in loaded.items()}, config, n_trials
    )
    versions = {name: meta.model_version for name, (_, meta) in loaded.items()}
    entries = [
        e.model_copy(update={"model_version": versions.get(e.name)}) if e.kind == "agent" else e for e in record.entries
    ]
    record = record.model_copy(update={"entries": entries})
    update_registry(models_dir, gate=record)  # only now: a gate that fails on the way writes nothing
    log.info("promotion gate: %s", record.reason)
    return record


def gate_decision(agents: dict, config: GateConfig, n_trials: int = 1) -> GateRecord:
    """The gate's decision for ``agents`` (``name -> (policy, env_config)``: anything with ``weights`` and
    ``weights_batch`` over observations, as ``policies.policy.Policy``), without writing anything."""
    from training.gate_play import Frame, play_agents, play_baselines

    frame = Frame.of([env_config for _, env_config in agents.values()], config)
    if frame.days < config.min_days:
        raise ConfigError(f"gate.min_days: validation has {frame.days} days, fewer than {config.min_days}")
    reference = play_baselines(frame, [config.baseline], config)[config.baseline]
    others = [b for b in config.baselines if b != config.baseline]
    played = {name: ("agent", growth) for name, growth in play_agents(frame, agents).items()}
    played |= {name: ("baseline", growth) for name, growth in play_baselines(frame, others, config).items()}
    pairs = [paired(name, kind, growth, reference[: len(growth)], config) for name, (kind, growth) in played.items()]
    comparisons = max(n_trials, len(agents)) + len(others)
    entries, promoted, kind, reason = decide(pairs, config, comparisons)
    return GateRecord(
        baseline=config.baseline,
        alpha=config.alpha,
        candidates=comparisons,
        z=widened_z(config.alpha, comparisons),
        method=frame.method,
        validation=frame.description,
        entries=entries,
        promoted=promoted,
        promoted_kind=kind,
        reason=reason,
        regime_trade_rate=frame.regime_trade_rate,
        decided_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def gate_sweep(plan, summaries: dict) -> GateRecord:
    """``run_gate`` after a sweep (``training.sweep``): over its models folder, widened for all its trials."""
    n_trials = sum(summary.n_trials for summary in summaries.values())
    return run_gate(plan.sweep.models_dir, plan.sweep.gate, n_trials=n_trials)
