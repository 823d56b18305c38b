"""Is the A/B verdict trustworthy under peeking? Simulated experiments, looked at after every ``--look-every``
feedbacks, each stopped at the first look that declares a difference. Prints JSON.

    python benchmarks/ab_validity.py [--experiments 2000] [--feedback 2000] [--look-every 20] [--alpha 0.05]

- **A/A** (both arms the same law): the share of experiments that ever declare a difference is the false-positive
  rate under continuous monitoring. For the always-valid confidence sequence (``experiments.sequential``, what the
  app's verdict uses) it must be at most alpha, within Monte-Carlo error (``2 * sqrt(alpha (1 - alpha) / E)``);
  Welch's t-test re-run at every look (peeking) is beside it.
- **A/B** with a known effect (``--effects``, in standard deviations of one return): power, the share of
  experiments that declare the right arm better, and the median feedback count at which they do.

Feedback alternates between the arms (each look sees ``k`` returns per arm); returns are Student-t with 4 degrees
of freedom scaled to 1% a day, heavier-tailed than a normal, as daily portfolio returns are.
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
from scipy import stats

from experiments.sequential import DEFAULT_TUNING_N, sequence_bounds

DAILY_VOL = 0.01
TAIL_DOF = 4


def returns(rng: np.random.Generator, shape: tuple[int, ...], mean: float) -> np.ndarray:
    scale = DAILY_VOL / math.sqrt(TAIL_DOF / (TAIL_DOF - 2))  # unit variance after scaling
    return mean + scale * rng.standard_t(TAIL_DOF, size=shape)


def simulate(
    rng: np.random.Generator,
    experiments: int,
    feedback: int,
    look_every: int,
    effect: float,
    alpha: float,
    tuning_n: float,
) -> dict[str, float | None]:
    """Run ``experiments`` experiments with challenger minus control mean ``effect * DAILY_VOL``."""
    looks = np.arange(look_every, feedback + 1, look_every)
    control = returns(rng, (experiments, feedback), 0.0)
    challenger = returns(rng, (experiments, feedback), effect * DAILY_VOL)
    out = {}
    stats_at = {}
    for name, x in (("control", control), ("challenger", challenger)):
        sums, squares = np.cumsum(x, axis=1)[:, looks - 1], np.cumsum(x * x, axis=1)[:, looks - 1]
        mean = sums / looks
        stats_at[name] = (mean, np.maximum((squares - looks * mean**2) / (looks - 1), 1e-300))
    difference = stats_at["challenger"][0] - stats_at["control"][0]
    se2 = (stats_at["challenger"][1] + stats_at["control"][1]) / looks
    half, _ = sequence_bounds(difference, se2, 2.0 * looks, alpha, tuning_n)
    sequential_hit = np.abs(difference) > half
    welch_t = difference / np.sqrt(se2)
    dof = se2**2 / ((stats_at["challenger"][1] / looks) ** 2 + (stats_at["control"][1] / looks) ** 2) * (looks - 1)
    welch_hit = 2 * stats.t.sf(np.abs(welch_t), dof) < alpha
    for label, hits in (("sequential", sequential_hit), ("welch_peeking", welch_hit)):
        ever = hits.any(axis=1)
        first = np.where(ever, hits.argmax(axis=1), -1)
        right = ever & (np.sign(difference[np.arange(experiments), first]) == np.sign(effect) if effect else ever)
        out[f"{label}_declared"] = float(ever.mean())
        if effect:
            out[f"{label}_power"] = float(right.mean())
            out[f"{label}_median_feedback_per_arm"] = float(np.median(looks[first[right]])) if right.any() else None
    # a fixed-horizon Welch test read once, at the end: the honest use of Welch
    out["welch_once_at_end_declared"] = float(welch_hit[:, -1].mean())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--feedback", type=int, default=2000, help="feedback returns per arm per experiment")
    parser.add_argument("--look-every", type=int, default=20, help="feedbacks per arm between looks")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--tuning-n", type=float, default=DEFAULT_TUNING_N)
    parser.add_argument("--effects", default="0.05,0.1,0.2", help="A/B effects in standard deviations of a return")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    a_a = simulate(rng, args.experiments, args.feedback, args.look_every, 0.0, args.alpha, args.tuning_n)
    tolerance = 2 * math.sqrt(args.alpha * (1 - args.alpha) / args.experiments)
    a_b = {
        effect: simulate(
            rng, args.experiments, args.feedback, args.look_every, float(effect), args.alpha, args.tuning_n
        )
        for effect in args.effects.split(",")
    }
    print(
        json.dumps(
            {
                "benchmark": "ab_validity",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "experiments": args.experiments,
                "feedback_per_arm": args.feedback,
                "look_every": args.look_every,
                "looks": args.feedback // args.look_every,
                "alpha": args.alpha,
                "tuning_n": args.tuning_n,
                "a_a": a_a
                | {
                    "monte_carlo_tolerance": tolerance,
                    "sequential_within_alpha": a_a["sequential_declared"] <= args.alpha + tolerance,
                },
                "a_b": a_b,
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
