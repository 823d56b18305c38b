"""Agents on real prices, out of sample: walk-forward over K folds and several seeds, beside the classical baselines.
Prints JSON.

    .venv/bin/python benchmarks/real_prices.py --sample etf-factors [--assets A B ...] [--algos ppo,sac,dqn]
        [--bases none,regime_growth] [--seeds 3] [--folds 3] [--timesteps 100000] [--variants bootstrap]
        [--out runs/real_prices]

For every algorithm, residual base (``policy.base``), training-path variant (``train_paths``: ``split`` replays
the train split, ``fitted`` draws paths of the regime model fitted on it, ``bootstrap`` a stationary block bootstrap
of it) and seed, the algorithm's config (``configs/<algo>.yaml`` over ``configs/env.yaml``) is retrained on each
fold's expanding window, selected on the fold's validation window and tested on the next one
(``evaluation.walkforward``); on each fold the promotion gate decides what would have been served, and ``served``
stitches those choices. The stitched out-of-sample series give each strategy's mean daily log growth and Sharpe ratio
(95% stationary-bootstrap interval); per variant, the mean and spread over seeds; and the baselines on the same days:
equal weight, risk parity, ``regime_growth`` (fitted on each fold's train split, its trade rate chosen on the fold's
validation), growth optimal, minimum variance. ``goals`` says whether ``served`` reached equal weight's growth and
risk parity's Sharpe, and by how much.
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

import numpy as np

from backtesting import statistics
from core.runtime import setup_console
from envs.samples import SAMPLES, write_sample
from evaluation.walkforward import walk_forward
from quant.registry import BaselinesConfig
from training.config import resolve_train_config
from training.train import train

BASELINES = ("equal_weight", "risk_parity", "regime_growth", "growth_optimal", "min_variance")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", choices=sorted(SAMPLES), default="etf-factors")
    parser.add_argument("--assets", nargs="*", help="a subset of the sample's columns")
    parser.add_argument("--algos", default="ppo")
    parser.add_argument("--bases", default="none,regime_growth", help="residual bases (policy.base) to train")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=100_000, help="env steps per agent and fold")
    parser.add_argument("--variants", default="bootstrap", help="train_paths: split, fitted, bootstrap")
    parser.add_argument("--out", default="runs/real_prices")
    args = parser.parse_args(argv)
    setup_console()
    logging.getLogger("training.progress").setLevel(logging.WARNING)  # a line per agent and fold is enough here
    started = time.perf_counter()
    variants = [
        (algo.strip(), base.strip(), paths.strip())
        for algo in args.algos.split(",")
        for base in args.bases.split(",")
        for paths in args.variants.split(",")
    ]
    name = args.sample + ("-" + "-".join(args.assets) if args.assets else "")
    work = Path(args.out) / name
    csv = work / "prices.csv"
    write_sample(args.sample, csv, args.assets)

    # One exported agent per variant and seed: walk-forward retrains its configuration on every fold.
    models = work / "models"
    for algo, base, paths in variants:
        for seed in range(args.seeds):
            env = {"data": {"path": str(csv.resolve())}, "train_paths": paths, "observe_regimes": True}
            overrides = {"env": env | {"policy": {"base": base}}, "seed": seed, "timesteps": 1}
            config = resolve_train_config(algo, overrides=overrides)
            train(
                config,
                agent=f"{algo}_{base}_{paths}_s{seed}",
                runs_dir=work / "runs",
                models_dir=models,
                dashboard=False,
                gate=False,
            )
    baselines = BaselinesConfig(include=BASELINES)
    wf = walk_forward(
        models, n_folds=args.folds, timesteps=args.timesteps, runs_dir=work / "walk_forward", baselines=baselines
    )

    def figures(series) -> dict:
        excess = series.returns - series.rf_daily
        low, high = statistics.sharpe_ci(excess)
        return {
            "mean_daily_log_growth": float(series.log_growth.mean()),
            "sharpe": float(series.metrics()["sharpe"]),
            "sharpe_ci95": [low, high],
            "annual_return": float(series.metrics()["annual_return"]),
            "annual_turnover": float(series.metrics()["annual_turnover"]),
        }

    equal, parity, served = wf.results["equal_weight"], wf.results["risk_parity"], wf.results["served"]
    report = {
        "benchmark": "real_prices",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "data": {"sample": args.sample, "assets": list(equal.assets), "about": SAMPLES[args.sample][1]},
        "algos": args.algos,
        "seeds": args.seeds,
        "timesteps_per_fold": args.timesteps,
        "folds": wf.folds,
        "out_of_sample_days": int(equal.returns.size),
        "baselines": {b: figures(wf.results[b]) for b in BASELINES if b in wf.results},
        "served": figures(served) | {"per_fold": [f["served"] for f in wf.folds]},
        "agents": {a: figures(wf.results[a]) for a in wf.agents},
        "variants": {},
    }
    for algo, base, paths in variants:
        variant = f"{algo}_{base}_{paths}"
        members = [a for a in wf.agents if a.startswith(f"{variant}_s")]
        growth = np.array([report["agents"][a]["mean_daily_log_growth"] for a in members])
        sharpe = np.array([report["agents"][a]["sharpe"] for a in members])
        average = np.mean([wf.results[a].returns for a in members], axis=0)  # the seed-average portfolio's returns
        report["variants"][variant] = {
            "mean_daily_log_growth": {
                "mean": float(growth.mean()),
                "std_over_seeds": float(growth.std(ddof=1)) if len(growth) > 1 else None,
            },
            "sharpe": {
                "mean": float(sharpe.mean()),
                "std_over_seeds": float(sharpe.std(ddof=1)) if len(sharpe) > 1 else None,
            },
            "vs_equal_weight": statistics.paired_comparison(average, equal.returns),
        }
    report["variants"]["served"] = {"vs_equal_weight": statistics.paired_comparison(served.returns, equal.returns)}
    growth_gap = float(served.log_growth.mean() - equal.log_growth.mean())
    sharpe_gap = float(served.metrics()["sharpe"] - parity.metrics()["sharpe"])
    report["goals"] = {
        "served_growth_minus_equal_weight_per_day": growth_gap,
        "served_reaches_equal_weight_growth": growth_gap >= 0,
        "served_sharpe_minus_risk_parity": sharpe_gap,
        "served_reaches_risk_parity_sharpe": sharpe_gap >= 0,
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
