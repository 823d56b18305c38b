"""Skill apart from luck on a synthetic market: agents and the reference strategies on many fresh paths of its law.

One test window is one draw of a noisy path. Here every agent and every reference strategy plays the same ``paths``
fresh paths (common random numbers; seeds never used for training or validation data) for ``days`` trading days
with the env's costs, in lockstep: one batched decision a day for all paths. The references, from least to most
informed: ``equal_weight`` and ``oracle_constant_mix`` (the law's best static mix, every 21 days); ``regime_growth``
(the growth-optimal mix for the regimes filtered from past returns, with the law fitted on the train split) and
``oracle_filtered`` (the same with the true law: the best a causal investor can do, the yardstick); and
``oracle_regime_aware`` (knows each day's regime, which no investor does).

Each agent's efficiency against an oracle, ``(g_agent - g_equal_weight) / (g_oracle - g_equal_weight)``, comes with
a standard error from the paired per-path differences (delta method).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backtesting.backtest import BacktestResult, path_env, run_backtest, run_batched, run_batched_strategy
from core.constants import TRADING_DAYS_PER_YEAR
from envs.config import EnvConfig
from envs.oracle import make_oracles
from envs.synthetic import MarketParams, simulate
from policies.format import ModelMetadata
from policies.policy import Policy
from quant.regimes import RegimeModel
from quant.registry import make_baseline

log = logging.getLogger(__name__)

REFERENCES = ("equal_weight", "oracle_constant_mix", "regime_growth", "oracle_filtered", "oracle_regime_aware")
ORACLES = ("oracle_filtered", "oracle_constant_mix")


@dataclass(frozen=True)
class Efficiency:
    value: float
    stderr: float

    @property
    def ci95(self) -> tuple[float, float]:
        return self.value - 1.96 * self.stderr, self.value + 1.96 * self.stderr


@dataclass(frozen=True)
class HeldOut:
    """Per strategy: mean daily log growth per path ``(paths,)`` and mean annual turnover; per agent (and
    ``regime_growth``) and oracle: the efficiency."""

    paths: int
    days: int
    first_seed: int
    growth: dict[str, np.ndarray]
    turnover: dict[str, float]
    efficiency: dict[str, dict[str, Efficiency]] = field(default_factory=dict)  # oracle -> strategy -> efficiency

    def summary(self) -> dict[str, Any]:
        """The numbers as JSON (``benchmarks/policy_quality.py``, the report's ``metrics.json``)."""
        return {
            "paths": self.paths,
            "days_per_path": self.days,
            "seeds": [self.first_seed, self.first_seed + self.paths - 1],
            "strategies": {
                name: {
                    "mean_daily_log_growth": float(g.mean()),
                    "stderr": float(g.std(ddof=1) / np.sqrt(len(g))),
                    "annual_turnover": round(self.turnover[name], 2),
                }
                for name, g in self.growth.items()
            },
            "efficiency": {
                oracle: {
                    name: {"value": e.value, "stderr": e.stderr, "ci95": list(e.ci95)} for name, e in table.items()
                }
                for oracle, table in self.efficiency.items()
            },
            "vs_equal_weight": {
                name: paired_difference(g, self.growth["equal_weight"])
                for name, g in self.growth.items()
                if name != "equal_weight"
            },
        }


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Mean daily log growth of ``a`` minus ``b`` on the same paths, its standard error and 95% interval."""
    difference = np.asarray(a) - np.asarray(b)
    mean, stderr = float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))
    return {"mean_daily_difference": mean, "stderr": stderr, "ci95": [mean - 1.96 * stderr, mean + 1.96 * stderr]}


def efficiency(agent: np.ndarray, equal: np.ndarray, oracle: np.ndarray) -> Efficiency:
    """The efficiency of the path averages and its standard error by the delta method on paired differences."""
    gap = oracle - equal
    value = float((agent - equal).mean() / gap.mean())
    terms = ((agent - equal) - value * gap) / gap.mean()
    return Efficiency(value, float(terms.std(ddof=1) / np.sqrt(len(terms))))


def _tail(results: list[BacktestResult], days: int) -> tuple[np.ndarray, float]:
    growth = np.array([r.log_growth[-days:].mean() for r in results])
    turnover = float(np.mean([r.turnover[-days:].sum() / days * TRADING_DAYS_PER_YEAR for r in results]))
    return growth, turnover


def held_out_comparison(
    agents: Mapping[str, tuple[Policy, ModelMetadata]],
    reference: EnvConfig,
    law: MarketParams,
    fitted: RegimeModel,
    *,
    paths: int = 100,
    days: int = 1000,
    first_seed: int = 10_000,
) -> HeldOut:
    """Play the agents and the reference strategies on ``paths`` fresh paths of ``law`` (module docstring).

    :param reference: the env config the reference strategies play under (its costs); agents play under their own.
    :param fitted: the law fitted on the train split, for ``regime_growth``.
    """
    warmup = max([m.closes_needed - 1 for _, m in agents.values()] + [reference.warmup_days])
    markets = [simulate(law, n_days=days + warmup + 1, seed=first_seed + i) for i in range(paths)]
    envs = [path_env(reference, market) for market, _ in markets]
    growth, turnover = {}, {}
    constant_mix, filtered, _ = make_oracles(law, markets[0][1], 21)
    for strategy in (
        make_baseline("equal_weight", law.assets),
        constant_mix,
        make_baseline("regime_growth", law.assets, regimes=fitted, regime_window_days=reference.regimes.window_days),
        filtered,
    ):
        growth[strategy.name], turnover[strategy.name] = _tail(run_batched_strategy(strategy, envs), days)
        log.info("held-out paths: %s done", strategy.name)
    aware = [run_backtest(make_oracles(law, regimes, 21)[2], env) for env, (_, regimes) in zip(envs, markets)]
    growth["oracle_regime_aware"], turnover["oracle_regime_aware"] = _tail(aware, days)
    for name, (policy, meta) in agents.items():
        results = run_batched(name, policy.weights_batch, [path_env(meta.env_config, market) for market, _ in markets])
        growth[name], turnover[name] = _tail(results, days)
        log.info("held-out paths: agent %s done", name)
    table = {
        oracle: {
            name: efficiency(growth[name], growth["equal_weight"], growth[oracle])
            for name in [*agents, "regime_growth"]
        }
        for oracle in ORACLES
    }
    return HeldOut(paths=paths, days=days, first_seed=first_seed, growth=growth, turnover=turnover, efficiency=table)
