"""Walk-forward evaluation: retrain every exported agent's configuration on K expanding windows and stitch the K
out-of-sample test windows into one series per strategy, so a verdict does not hinge on one split.

Fold k trains on everything before its validation window, selects the module by validation log growth (as
training always does) and is tested on the next ``test_days``; baselines trade the same days with the same costs.
Each fold's backtest starts from equal weights on its first test day.

On each fold the promotion gate (``training.gate``) decides, on that fold's validation window, what the platform
would have served: an agent, or a baseline where no agent beat the gate's baseline beyond luck. ``served`` stitches
those choices' test windows: the walk-forward of what was actually served, not of the agents alone.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backtesting import statistics
from backtesting.backtest import BacktestResult, PolicyStrategy, evaluation_env, run_all
from core.config import parse_config
from core.errors import DataError
from envs.config import with_data
from envs.regimes import fitted_regime_model
from envs.sources import load_market
from envs.splits import walk_forward_folds
from quant.registry import BaselinesConfig, make_baselines

log = logging.getLogger(__name__)


def first_days(result: BacktestResult, days: int) -> BacktestResult:
    """``result``'s first ``days`` days (a fold's test window of a backtest that ran to the data's end)."""
    return BacktestResult(
        name=result.name,
        dates=result.dates[:days],
        returns=result.returns[:days],
        weights=result.weights[:days],
        turnover=result.turnover[:days],
        costs=result.costs[:days],
        wealth=result.wealth[:days],
        assets=result.assets,
        rf_daily=result.rf_daily if np.isscalar(result.rf_daily) else result.rf_daily[:days],
    )


def stitch(parts: list[BacktestResult]) -> BacktestResult:
    """Adjacent out-of-sample windows of one strategy as one series, its wealth compounded across them."""
    returns = np.concatenate([p.returns for p in parts])
    return BacktestResult(
        name=parts[0].name,
        dates=np.concatenate([p.dates for p in parts]),
        returns=returns,
        weights=np.concatenate([p.weights for p in parts]),
        turnover=np.concatenate([p.turnover for p in parts]),
        costs=np.concatenate([p.costs for p in parts]),
        wealth=np.cumprod(1.0 + returns),
        assets=parts[0].assets,
        rf_daily=0.0
        if all(np.isscalar(p.rf_daily) for p in parts)
        else np.concatenate([np.broadcast_to(p.rf_daily, p.returns.shape) for p in parts]),
    )


def fold_bounds(market, fold: dict[str, Any]) -> dict[str, str]:
    """The ``data`` fields (``train_end``, ``validation_end``) that make a config's splits those of ``fold``."""
    return {
        "train_end": str(market.dates[fold["train"].last]),
        "validation_end": str(market.dates[fold["validation"].last]),
    }


@dataclass(frozen=True)
class WalkForward:
    """K retrained folds, stitched: one out-of-sample series per strategy over every fold's test window."""

    results: dict[str, BacktestResult]  # every agent and baseline, and ``served``
    folds: list[dict[str, Any]]  # per fold its dates, what was served and the regime_growth rate chosen
    agents: list[str]
    timesteps: int
    intervals: dict[str, dict[str, list[float]]]


def walk_forward(
    models_dir: str | Path,
    *,
    n_folds: int,
    timesteps: int,
    runs_dir: Path,
    data: str | None = None,
    min_train_days: int = 1008,
    validation_days: int = 252,
    baselines: BaselinesConfig | None = None,
    agents: Sequence[str] | None = None,
    bootstrap_resamples: int = 1000,
    gate: Any = None,
) -> WalkForward:
    """Retrain, select and test every agent (or only ``agents``) on ``n_folds`` folds, gate each fold; returns
    stitched results (``served`` among them) and per-fold dates and decisions.

    :param gate: a ``training.gate.GateConfig`` (default: its defaults)."""
    from policies.format import agent_dirs, read_metadata
    from training.config import TrainConfig
    from training.gate import GateConfig, run_gate
    from training.train import train

    metas = {d.name: read_metadata(d) for d in agent_dirs(models_dir) if agents is None or d.name in agents}
    if not metas:
        raise DataError(f"{models_dir}: no exported agents" + (f" named {list(agents)}" if agents else ""))
    reference = with_data(next(iter(metas.values())).env_config, data)
    market = load_market(reference.data)
    warmup = max(m.closes_needed - 1 for m in metas.values())
    folds = walk_forward_folds(
        market, n_folds=n_folds, warmup_days=warmup, min_train_days=min_train_days, validation_days=validation_days
    )
    pieces: dict[str, list[BacktestResult]] = {}
    fold_dates = []
    for k, fold in enumerate(folds):
        bounds = fold_bounds(market, fold)
        test = fold["test"]
        fold_dates.append(
            {
                "fold": k,
                "train_end": bounds["train_end"],
                "validation_end": bounds["validation_end"],
                "test_first": str(market.dates[test.first]),
                "test_last": str(market.dates[test.last]),
            }
        )
        log.info(
            "walk-forward fold %d/%d: train to %s, test %s .. %s",
            k + 1,
            n_folds,
            bounds["train_end"],
            fold_dates[-1]["test_first"],
            fold_dates[-1]["test_last"],
        )
        fold_models = runs_dir / f"fold{k}" / "models"
        for name, meta in metas.items():
            resolved = dict(meta.reproducibility.resolved_config)
            data_config = reference.data.model_copy(update=bounds)
            # The fold fits its own regime model on its own train split: the exported one saw later data.
            regimes = meta.env_config.regimes.model_copy(update={"model": None})
            env_config = meta.env_config.model_copy(update={"data": data_config, "split": "train", "regimes": regimes})
            resolved["env"] = env_config.model_dump(mode="json")
            resolved["timesteps"] = timesteps
            config = parse_config(TrainConfig, resolved, where=f"{name}: resolved_config")
            train(config, agent=name, runs_dir=runs_dir / f"fold{k}" / "runs", models_dir=fold_models, gate=False)
        from policies.load import load_policy

        # What the platform would have served from this fold on: the gate on the fold's validation window.
        n_trials = sum(m.sweep.n_trials if m.sweep else 1 for m in metas.values())
        # The gate the agents were trained with (their resolved config), unless one is given.
        settings = gate or GateConfig.model_validate(
            next(iter(metas.values())).reproducibility.resolved_config.get("gate") or {}
        )
        decision = run_gate(fold_models, settings, n_trials=n_trials)
        fold_dates[-1].update(served=decision.promoted, regime_trade_rate=decision.regime_trade_rate)
        log.info("walk-forward fold %d/%d: %s", k + 1, n_folds, decision.reason)

        for name in metas:
            policy, meta = load_policy(fold_models / name)
            env = evaluation_env(meta.env_config, "test", market=market)
            result = run_all([PolicyStrategy(name, policy.weights)], env)[name]
            pieces.setdefault(name, []).append(first_days(result, test.n_days))
        fold_regimes = reference.regimes.model_copy(update={"model": None})
        fold_reference = reference.model_copy(
            update={"data": reference.data.model_copy(update=bounds), "regimes": fold_regimes}
        )
        env = evaluation_env(fold_reference, "test", market=market)
        baselines = baselines or BaselinesConfig()
        fold_baselines = baselines
        if baselines.regime_trade_rate is None:  # the rate the fold's gate chose on its validation window
            fold_baselines = baselines.model_copy(update={"regime_trade_rate": decision.regime_trade_rate})
        if decision.promoted_kind == "baseline" and decision.promoted not in fold_baselines.include:
            fold_baselines = fold_baselines.model_copy(update={"include": (*fold_baselines.include, decision.promoted)})
        fitted = (
            fitted_regime_model(fold_reference, market, env.splits["train"])
            if "regime_growth" in fold_baselines.include
            else None
        )
        for name, result in run_all(
            make_baselines(env.assets, fold_baselines, fitted, fold_reference.regimes.window_days), env
        ).items():
            if name in baselines.include:
                pieces.setdefault(name, []).append(first_days(result, test.n_days))
            if name == decision.promoted:
                pieces.setdefault("served", []).append(first_days(result, test.n_days))
        if decision.promoted_kind == "agent":
            pieces.setdefault("served", []).append(pieces[decision.promoted][-1])
    results = {name: stitch(parts) for name, parts in pieces.items()}
    results["served"] = dataclasses.replace(results["served"], name="served")
    intervals = {
        name: {"sharpe_ci95": list(statistics.sharpe_ci(r.returns, n_resamples=bootstrap_resamples))}
        for name, r in results.items()
    }
    return WalkForward(results=results, folds=fold_dates, agents=list(metas), timesteps=timesteps, intervals=intervals)
