"""The growth-optimal solver behind ``regime_growth`` and the filtered oracle at many assets. Prints JSON.

    .venv/bin/python benchmarks/growth_solver.py [--assets 20 50 200] [--problems 2000] [--slsqp 20]

For each universe size, ``--problems`` one-day problems of the synthetic factor market's law
(``envs.synthetic.default_params``): the predictive mixture of its regimes under random regime probabilities, as the
filter produces them. ``quant.growth.growth_optimal_batch`` (the batched active-set search past 10 assets) solves them
all at once; SLSQP (``growth_optimal_weights``, what the batch replaced) solves the first ``--slsqp`` one by one. Per
size: milliseconds per problem for each, their ratio, the largest shortfall of the batch's expected log growth below
SLSQP's on the same problems (negative: the batch is at least as good), and the mean and largest number of assets
held.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.synthetic import default_params  # noqa: E402
from quant.growth import (  # noqa: E402
    expected_log_growth,
    growth_optimal_batch,
    growth_optimal_weights,
    mixture_inputs,
)


def measure(n_assets: int, n_problems: int, n_slsqp: int, seed: int = 0) -> dict:
    law = default_params(n_assets, 3, seed)
    probabilities = np.random.default_rng(seed).dirichlet(np.full(3, 0.3), size=n_problems)
    mu, cov = mixture_inputs(probabilities, np.asarray(law.mu), np.asarray(law.cov))
    started = time.perf_counter()
    batch = growth_optimal_batch(mu, cov)
    batch_ms = 1000 * (time.perf_counter() - started) / n_problems
    started = time.perf_counter()
    one_by_one = [growth_optimal_weights(mu[i], cov[i]) for i in range(n_slsqp)]
    slsqp_ms = 1000 * (time.perf_counter() - started) / n_slsqp
    shortfall = max(
        expected_log_growth(w, mu[i], cov[i]) - expected_log_growth(batch[i], mu[i], cov[i])
        for i, w in enumerate(one_by_one)
    )
    held = (batch > 1e-9).sum(axis=1)
    return {
        "batch_ms_per_problem": round(batch_ms, 4),
        "slsqp_ms_per_problem": round(slsqp_ms, 3),
        "slsqp_over_batch": round(slsqp_ms / batch_ms, 1),
        "max_growth_shortfall_per_day": float(shortfall),
        "assets_held_mean": round(float(held.mean()), 2),
        "assets_held_max": int(held.max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, nargs="+", default=[20, 50, 200])
    parser.add_argument("--problems", type=int, default=2000)
    parser.add_argument("--slsqp", type=int, default=20, help="problems solved one by one by SLSQP, per size")
    args = parser.parse_args(argv)
    report = {
        "benchmark": "growth_solver",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "problems": args.problems,
        "sizes": {str(n): measure(n, args.problems, args.slsqp) for n in args.assets},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
