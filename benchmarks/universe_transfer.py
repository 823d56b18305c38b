"""An asset-shared agent trained on a random half of a universe allocates the other half: walk-forward, beside equal
weight. Prints JSON.

    .venv/bin/python benchmarks/universe_transfer.py [--sample sp500-stocks] [--folds 3] [--timesteps 300000]
        [--sample-assets 5] [--seed 0] [--out runs/universe_transfer]

The data's assets are split at random (``--seed``) into a training half and a held-out half. On each of ``--folds``
expanding walk-forward windows (``envs.splits.walk_forward_folds``), PPO with the asset-shared module
(``configs/ppo_shared.yaml``; no regime probabilities and no residual base, the features an agent may carry to other
assets) trains on the training half's history only, drawing ``--sample-assets`` of its assets per episode, and is
selected on the fold's validation window over the whole training half. It then trades the fold's test window twice:
on the held-out half, assets it never saw (``transfer``), and on its own half (``own``). Equal weight, risk parity
and minimum variance trade the same days with the same costs. The folds' test windows are stitched into one series
per strategy. Per series: mean daily log growth with its standard error, Sharpe ratio with a 95% stationary-bootstrap
interval and annual turnover; for each agent series, the paired daily difference to equal weight on the same assets
(Newey-West t statistic).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backtesting import statistics  # noqa: E402
from backtesting.backtest import BacktestResult, PolicyStrategy, evaluation_env, run_all  # noqa: E402
from backtesting.metrics import annualized_turnover, sharpe_ratio  # noqa: E402
from envs.samples import write_sample  # noqa: E402
from envs.sources import load_market  # noqa: E402
from envs.splits import walk_forward_folds  # noqa: E402
from evaluation.walkforward import first_days, fold_bounds, stitch  # noqa: E402
from quant.registry import BaselinesConfig, make_baselines  # noqa: E402

BASELINES = ("equal_weight", "risk_parity", "min_variance")


def train_fold(args: argparse.Namespace, data: str, assets: list[str], bounds: dict[str, str], out: Path) -> Path:
    from training.config import resolve_train_config
    from training.train import train

    overrides = {
        "timesteps": args.timesteps,
        "seed": args.seed,
        "env": {
            "data": {"path": data, "assets": assets, **bounds},
            "observe_regimes": False,
            "policy": {"base": "none"},
            "universe": {"sample_assets": args.sample_assets},
        },
    }
    config = resolve_train_config("ppo", ROOT / "configs" / "ppo_shared.yaml", overrides=overrides)
    train(config, agent="shared", runs_dir=out / "runs", models_dir=out / "models", dashboard=False, gate=False)
    return out / "models" / "shared"


def test_window(policy, env_config, assets: list[str], days: int) -> dict[str, BacktestResult]:
    """The agent and the baselines on the fold's test window over ``assets``."""
    config = env_config.model_copy(update={"data": env_config.data.model_copy(update={"assets": tuple(assets)})})
    env = evaluation_env(config, "test")
    strategies = [PolicyStrategy("agent", policy.weights)]
    strategies += make_baselines(env.assets, BaselinesConfig(include=BASELINES), None, config.regimes.window_days)
    return {name: first_days(result, days) for name, result in run_all(strategies, env).items()}


def describe(result: BacktestResult, equal: BacktestResult | None) -> dict[str, Any]:
    log_growth = np.log1p(result.returns)
    figures = {
        "mean_daily_log_growth_bp": round(1e4 * float(log_growth.mean()), 3),
        "stderr_bp": round(1e4 * float(log_growth.std(ddof=1) / np.sqrt(log_growth.size)), 3),
        "sharpe": round(sharpe_ratio(result.returns), 3),
        "sharpe_ci95": [round(x, 3) for x in statistics.sharpe_ci(result.returns, n_resamples=1000)],
        "turnover_per_year": round(annualized_turnover(result.turnover), 2),
    }
    if equal is not None:
        paired = statistics.paired_comparison(log_growth, np.log1p(equal.returns))
        figures["minus_equal_weight_bp"] = round(1e4 * paired["mean_daily_difference"], 3)
        figures["minus_equal_weight_t"] = round(paired["t_statistic"], 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", default="sp500-stocks")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=300_000)
    parser.add_argument("--sample-assets", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="the random half, and training's seed")
    parser.add_argument("--out", default="runs/universe_transfer")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    started = time.perf_counter()

    data = str(ROOT / "data" / f"{args.sample}.csv")
    write_sample(args.sample, data)
    from envs.config import DataConfig

    market = load_market(DataConfig(path=data))
    order = np.random.default_rng(args.seed).permutation(len(market.assets))
    half = len(order) // 2
    train_assets = sorted(market.assets[i] for i in order[:half])
    other_assets = sorted(market.assets[i] for i in order[half:])
    folds = walk_forward_folds(market, n_folds=args.folds, warmup_days=21, min_train_days=1008, validation_days=252)
    pieces: dict[str, dict[str, list[BacktestResult]]] = {"transfer": {}, "own": {}}
    fold_dates = []
    from policies.load import load_policy

    for k, fold in enumerate(folds):
        bounds = fold_bounds(market, fold)
        test = fold["test"]
        fold_dates.append({**bounds, "test": [str(market.dates[test.first]), str(market.dates[test.last])]})
        print(f"universe_transfer: fold {k + 1}/{args.folds}: {fold_dates[-1]}", file=sys.stderr, flush=True)
        agent_dir = train_fold(args, data, train_assets, bounds, Path(args.out) / f"fold{k}")
        policy, meta = load_policy(agent_dir)
        for universe, assets in (("transfer", other_assets), ("own", train_assets)):
            for name, result in test_window(policy, meta.env_config, assets, test.n_days).items():
                pieces[universe].setdefault(name, []).append(result)
    import ray

    if ray.is_initialized():
        ray.shutdown()
    series = {universe: {n: stitch(p) for n, p in parts.items()} for universe, parts in pieces.items()}
    report = {
        "benchmark": "universe_transfer",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "data": args.sample,
        "train_assets": train_assets,
        "held_out_assets": other_assets,
        "timesteps_per_fold": args.timesteps,
        "sample_assets": args.sample_assets,
        "folds": fold_dates,
        "days": int(series["transfer"]["agent"].returns.size),
        **{
            universe: {
                name: describe(result, None if name == "equal_weight" else by_name["equal_weight"])
                for name, result in by_name.items()
            }
            for universe, by_name in series.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
