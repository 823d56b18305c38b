"""Policy quality on held-out synthetic paths of the same market law. Prints JSON.

    python benchmarks/policy_quality.py [--models models/] [--paths 20] [--days 1000] [--first-seed 10000]

Each exported agent, equal weight, the true growth-optimal constant mix and the regime-aware oracle play the same
``--paths`` fresh paths (common random numbers; seeds never used for training data) with 10 bps costs. Reported per
strategy: mean daily log growth across paths with its standard error, and for agents the efficiency

    (g_agent - g_equal_weight) / (g_oracle_constant_mix - g_equal_weight)

with a standard error from the paired per-path differences. Training throughput (env steps/s) comes from each
model's metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from backtesting.backtest import PolicyStrategy, path_env, run_all
from backtesting.baselines import EqualWeight, make_oracles
from envs.sources import market_law
from envs.synthetic import simulate
from policies.format import agent_dirs
from policies.load import load_policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--paths", type=int, default=20)
    parser.add_argument("--days", type=int, default=1000, help="trading days per path")
    parser.add_argument("--first-seed", type=int, default=10_000)
    args = parser.parse_args(argv)

    exported = agent_dirs(args.models)
    if not exported:
        print(
            f"error: no exported agents under {args.models}/ (run make demo or python -m training.sweep)",
            file=sys.stderr,
        )
        return 1
    agents = {d.name: load_policy(d) for d in exported}
    started = time.perf_counter()
    reference = next(iter(agents.values()))[1].env_config
    params = market_law(reference.data)
    if params is None:
        print(
            f"error: agents were trained on {reference.data.path}, which has no .params.json: not a synthetic market",
            file=sys.stderr,
        )
        return 1

    growth: dict[str, list[float]] = {}
    warmup = max(m.closes_needed - 1 for _, m in agents.values())
    for i in range(args.paths):
        seed = args.first_seed + i
        market, regimes = simulate(params, n_days=args.days + warmup + 1, seed=seed)
        for name, (policy, meta) in agents.items():
            env = path_env(meta.env_config, market)
            result = run_all([PolicyStrategy(name, policy.weights)], env)[name]
            growth.setdefault(name, []).append(float(result.log_growth[-args.days :].mean()))
        env = path_env(reference, market)
        others = [EqualWeight("equal_weight", 21)] + make_oracles(params, regimes, 21)
        for name, result in run_all(others, env).items():
            growth.setdefault(name, []).append(float(result.log_growth[-args.days :].mean()))
        print(f"path {i + 1}/{args.paths} done", file=sys.stderr, flush=True)

    g = {name: np.asarray(values) for name, values in growth.items()}
    gap = g["oracle_constant_mix"] - g["equal_weight"]

    def stats(values: np.ndarray) -> dict:
        return {
            "mean_daily_log_growth": float(values.mean()),
            "stderr": float(values.std(ddof=1) / np.sqrt(len(values))),
        }

    report = {
        "benchmark": "policy_quality",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "paths": args.paths,
        "days_per_path": args.days,
        "seeds": [args.first_seed, args.first_seed + args.paths - 1],
        "cost_bps": reference.cost_bps,
        "reference": {name: stats(g[name]) for name in ("equal_weight", "oracle_constant_mix", "oracle_regime_aware")},
        "agents": {},
        "seconds": None,
    }
    for name, (_, meta) in agents.items():
        # Efficiency of the path averages; its standard error by the delta method on paired per-path differences.
        numerator = g[name] - g["equal_weight"]
        efficiency = float(numerator.mean() / gap.mean())
        ratio_terms = (numerator - efficiency * gap) / gap.mean()
        report["agents"][name] = {
            "algorithm": meta.algorithm,
            **stats(g[name]),
            "efficiency": efficiency,
            "efficiency_stderr": float(ratio_terms.std(ddof=1) / np.sqrt(len(ratio_terms))),
            "training": meta.training and meta.training.model_dump(),
        }
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
