"""Is the backtest-consistency guardrail valid, and how fast does it flag a broken agent? Simulated, prints JSON.

    python benchmarks/ab_consistency.py [--runs 2000] [--days 250] [--paths 20] [--validation-days 500]

Each run draws a validation sample like the promotion gate's (``--paths`` paths of ``--validation-days`` days of an
agent's daily paired difference to 1/N) and records what the gate records from it (mean, spread, days, and the 1st
and 99th percentiles of the spread over 20-day windows, ``training.gate.window_spreads``); then ``--days`` live days
go through ``experiments.consistency.ConsistencyTest``, read every day.

The differences follow the market's volatility regime, as real ones do: a two-state Markov chain (calm and
volatile, persistent) scales a Student-t (4 degrees of freedom) or normal daily difference, so a stretch of live days
can sit in one regime for months.

- ``a_a``: the live agent is the validated one (same law): the share of runs ever flagged is the false-positive rate
  under daily peeking, to be at most alpha within Monte-Carlo error (``2 sqrt(alpha (1 - alpha) / runs)``).
- broken agents: the share flagged within 60 days and the median day of the flag (null: most never flagged) for a
  spread 0.35x (an agent holding other assets than it learnt on: ``benchmarks/ab_replay.py --swap-assets`` measured
  0.33% live against a validated band from 0.44%), a spread 3x (noise: a feature bug), and a mean 20 bp/day lower.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np

from experiments.consistency import ConsistencyTest, Expectation
from training.gate import window_spreads

CALM, VOLATILE = 0.009, 0.035  # daily spread of the difference in each regime (the built-in market's PPO: 0.5%-4.4%)
STAY = 0.99  # daily probability of staying in a regime (mean stay 100 days)
MEAN = 5e-4


def regime_scales(rng: np.random.Generator, paths: int, days: int) -> np.ndarray:
    """``(paths, days)`` daily spreads from the two-state chain, each path starting from its stationary law."""
    state = rng.random(paths) < 0.5
    out = np.empty((paths, days))
    for t in range(days):
        out[:, t] = np.where(state, VOLATILE, CALM)
        state = np.where(rng.random(paths) < STAY, state, ~state)
    return out


def draws(rng: np.random.Generator, shape: tuple[int, int], tails: str) -> np.ndarray:
    if tails == "normal":
        return rng.standard_normal(shape)
    return rng.standard_t(4, size=shape) / math.sqrt(2.0)  # unit variance


def scenario(
    rng: np.random.Generator, args, tails: str, spread: float = 1.0, shift: float = 0.0
) -> dict[str, float | None]:
    flagged_on = []
    for _ in range(args.runs):
        validation = MEAN + regime_scales(rng, args.paths, args.validation_days) * draws(
            rng, (args.paths, args.validation_days), tails
        )
        band = window_spreads(validation)
        expected = Expectation(
            baseline="equal_weight",
            mean=float(validation.mean()),
            std=float(validation.std(ddof=1)),
            days=validation.size,
            std_low=band[0],
            std_high=band[1],
        )
        live = MEAN + shift + spread * regime_scales(rng, 1, args.days)[0] * draws(rng, (1, args.days), tails)[0]
        test = ConsistencyTest(expected, alpha=args.alpha)
        for x in live:
            test.update(float(x))
        flagged_on.append(test.flagged_on_day or 0)
    days = np.array(flagged_on)
    flagged = days > 0
    return {
        "flagged": float(flagged.mean()),
        "flagged_within_60_days": float(((days > 0) & (days <= 60)).mean()),
        "median_flag_day": float(np.median(days[flagged])) if flagged.mean() > 0.5 else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--days", type=int, default=250, help="live days per run")
    parser.add_argument("--paths", type=int, default=20, help="validation paths per run")
    parser.add_argument("--validation-days", type=int, default=500)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    tolerance = 2 * math.sqrt(args.alpha * (1 - args.alpha) / args.runs)
    out = {}
    for tails in ("normal", "student_t4"):
        a_a = scenario(rng, args, tails)
        out[tails] = {
            "a_a": a_a | {"within_alpha": a_a["flagged"] <= args.alpha + tolerance},
            "spread_0.35x": scenario(rng, args, tails, spread=0.35),
            "spread_3x": scenario(rng, args, tails, spread=3.0),
            "mean_minus_20bp": scenario(rng, args, tails, shift=-0.002),
        }
    print(
        json.dumps(
            {
                "benchmark": "ab_consistency",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "runs": args.runs,
                "live_days": args.days,
                "validation": {"paths": args.paths, "days": args.validation_days, "regimes": [CALM, VOLATILE]},
                "alpha": args.alpha,
                "monte_carlo_tolerance": tolerance,
                **out,
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
