"""Is the A/B verdict trustworthy under peeking? Simulated experiments, each stopped at the first look that declares
a difference. Prints JSON.

    python benchmarks/ab_validity.py [--experiments 2000] [--feedback 2000] [--look-every 20] [--alpha 0.05]
        [--days 250] [--clients 1,5,20,100] [--correlation 0.9] [--day-vol 0.02] [--client-noise 0.001]
        [--tuning-days 250] [--min-days 20] [--edges-bp 5,20] [--horizon-days 2000] [--power-experiments 1000]

Feedback scenarios (``a_a``, ``a_b``): independent returns, looked at after every ``--look-every`` feedbacks.

- **A/A** (both arms the same law): the share of experiments that ever declare a difference is the false-positive
  rate under continuous monitoring. For the always-valid confidence sequence (``experiments.sequential``, what the
  app's verdict uses) it must be at most alpha, within Monte-Carlo error (``2 * sqrt(alpha (1 - alpha) / E)``);
  Welch's t-test re-run at every look (peeking) is beside it.
- **A/B** with a known effect (``--effects``, in standard deviations of one return): power, the share of
  experiments that declare the right arm better, and the median feedback count at which they do.

Feedback alternates between the arms (each look sees ``k`` returns per arm); returns are Student-t with 4 degrees
of freedom scaled to 1% a day, heavier-tailed than a normal, as daily portfolio returns are.

Trading-day scenarios (``days_a_a``, ``days_correlated``, ``days_power``): the day is the unit. Each of ``--days``
days draws both arms' daily returns (Student-t 4, ``--day-vol`` a day) once; that day's ``C`` clients
(``--clients``) are assigned 50/50 at random, and every client on an arm sees that arm's return of the day plus its
own normal noise (``--client-noise`` a day, holding different weights; drawn apart for each arm). Clients of a day
therefore share the market move, and per-request returns are not independent. Per day only sufficient statistics
are drawn (count, sum and sum of squares of each arm's requests, the day's mean paired difference), exactly in law,
so no experiments x days x clients array is made; experiments run in chunks.

- ``days_a_a``: both arms are the same strategy (the same daily return).
- ``days_correlated``: two strategies of equal expected return, a shared market factor plus each arm's own part,
  correlated ``--correlation`` day to day (like two real agents).

For each C, the false-positive rate, looking every day, of: today's per-request tests, unpaired over realised
requests (Welch read once at the end ``welch_once_at_end``, Welch at every day ``welch_peeking``, and the always-valid
sequence over requests ``per_request_sequential``: observations = requests so far, variance
``s_a^2/n_a + s_b^2/n_b``, tuned to ``--tuning-n``); and the paired day-clustered test, which sees every arm's
return for every request (full information) and takes each day's mean over clients of B minus A: the always-valid
sequence over days (``paired_sequential``: observations = days, variance = sample variance of the daily differences
/ days, tuned to ``--tuning-days``, read from day ``--min-days`` on; ``paired_sequential_from_day_2`` reads it from
day 2, where a variance from 2 or 3 days is too noisy for the asymptotic sequence) and its t-test read once at the
end (``paired_t_once_at_end``). With Monte-Carlo error and whether the paired sequence is within alpha of it.

- ``days_power``: the correlated scenario with B ahead by ``--edges-bp`` basis points a day, up to
  ``--horizon-days`` (``--power-experiments`` per edge and C; 0 skips it): per C, the share of experiments whose
  first verdict names B within the horizon (``_power``; ``_wrong``: names A), the median day of it (null where fewer
  than half do), for the paired sequence and the per-request one, and their ratio, per-request over paired (a lower
  bound, horizon / paired median, where the per-request test decides in fewer than half). Where the per-request
  test is invalid (many clients a day) its speed is bought with its false positives.

``--experiments`` is the count per scenario, and per C in the trading-day ones.
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
CHUNK_CELLS = 500_000  # experiments x days per chunk of the trading-day simulation


def unit_t(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(TAIL_DOF, size=shape) / math.sqrt(TAIL_DOF / (TAIL_DOF - 2))


def returns(rng: np.random.Generator, shape: tuple[int, ...], mean: float) -> np.ndarray:
    return mean + DAILY_VOL * unit_t(rng, shape)


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


# -- the trading day as the unit ----------------------------------------------------------------------------------


def first_verdicts(hits: np.ndarray, difference: np.ndarray) -> np.ndarray:
    """Per experiment: +d where the first declaration (day d, 1-based) says B is better, -d where worse, 0 never."""
    ever = hits.any(axis=1)
    first = hits.argmax(axis=1)
    sign = np.sign(difference[np.arange(len(hits)), first])
    return np.where(ever, (first + 1) * np.where(sign >= 0, 1, -1), 0)


def arm_days(args: argparse.Namespace, rng, shape, scenario: str, edge: float) -> tuple[np.ndarray, np.ndarray]:
    """Both arms' daily returns: one strategy for A/A, else market factor plus each arm's own part; B adds ``edge``."""
    if scenario == "same":
        a = args.day_vol * unit_t(rng, shape)
        return a, a + edge
    rho = args.correlation
    market = math.sqrt(rho) * unit_t(rng, shape)
    a = args.day_vol * (market + math.sqrt(1 - rho) * unit_t(rng, shape))
    return a, args.day_vol * (market + math.sqrt(1 - rho) * unit_t(rng, shape)) + edge


def simulate_days(
    args: argparse.Namespace, rng, experiments: int, days: int, clients: int, scenario: str, edge: float
) -> dict[str, np.ndarray]:
    """One chunk of experiments: each test's signed first-verdict day (``first_verdicts``)."""
    shape = (experiments, days)
    a, b = arm_days(args, rng, shape, scenario, edge)
    n_b = rng.binomial(clients, 0.5, shape).astype(np.float64)
    n_a = clients - n_b
    # noise sums of A's clients on A, of B's clients on B, and the counterfactuals: B's clients on A, A's on B
    z_a, z_b, z_a_of_b, z_b_of_a = rng.standard_normal((4, *shape))
    noise = args.client_noise
    cumulative = []
    for n, r, z in ((n_a, a, z_a), (n_b, b, z_b)):
        shared = noise * np.sqrt(n) * z  # the sum of the noise of the day's n clients on this arm
        within = 2.0 * rng.standard_gamma(np.maximum(n - 1, 0) / 2)  # chi^2_{n-1}: their spread about their mean
        sums = n * r + shared
        squares = n * r * r + 2 * r * shared + noise**2 * (np.where(n > 0, z * z, 0.0) + within)
        cumulative.append([np.cumsum(x, axis=1) for x in (n, sums, squares)])
    (count_a, sum_a, sq_a), (count_b, sum_b, sq_b) = cumulative
    enough = (count_a >= 2) & (count_b >= 2)
    count_a, count_b = np.maximum(count_a, 2), np.maximum(count_b, 2)
    mean_a, mean_b = sum_a / count_a, sum_b / count_b
    var_a = np.maximum((sq_a - count_a * mean_a**2) / (count_a - 1), 1e-300)
    var_b = np.maximum((sq_b - count_b * mean_b**2) / (count_b - 1), 1e-300)
    difference, se2 = mean_b - mean_a, var_a / count_a + var_b / count_b
    half, _ = sequence_bounds(difference, se2, count_a + count_b, args.alpha, args.tuning_n)
    dof = se2**2 / ((var_a / count_a) ** 2 / (count_a - 1) + (var_b / count_b) ** 2 / (count_b - 1))
    welch = enough & (2 * stats.t.sf(np.abs(difference) / np.sqrt(se2), dof) < args.alpha)
    out = {
        "welch_once_at_end": first_verdicts(welch & (np.arange(days) == days - 1), difference),
        "welch_peeking": first_verdicts(welch, difference),
        "per_request_sequential": first_verdicts(enough & (np.abs(difference) > half), difference),
    }
    # full information: the day's mean over all its clients of (B - A), each client on both arms
    spread = np.sqrt(n_b) * (z_b - z_a_of_b) + np.sqrt(n_a) * (z_b_of_a - z_a)
    paired = b - a + noise / clients * spread
    k = np.arange(1, days + 1, dtype=np.float64)
    mean = np.cumsum(paired, axis=1) / k
    var = np.maximum((np.cumsum(paired * paired, axis=1) - k * mean**2) / np.maximum(k - 1, 1), 1e-300)
    half, _ = sequence_bounds(mean, var / k, k, args.alpha, args.tuning_days)
    paired_hit = (k >= 2) & (np.abs(mean) > half)
    t_end = mean[:, -1] / np.sqrt(var[:, -1] / days)
    t_hit = np.zeros(shape, dtype=bool)
    t_hit[:, -1] = 2 * stats.t.sf(np.abs(t_end), days - 1) < args.alpha
    out["paired_sequential"] = first_verdicts(paired_hit & (k >= args.min_days), mean)
    out["paired_sequential_from_day_2"] = first_verdicts(paired_hit, mean)
    out["paired_t_once_at_end"] = first_verdicts(t_hit, mean)
    return out


def run_days(
    args: argparse.Namespace, rng, experiments: int, days: int, clients: int, scenario: str, edge: float
) -> dict[str, np.ndarray]:
    """``simulate_days`` in chunks of about ``CHUNK_CELLS`` experiment-days, concatenated."""
    chunk = max(1, CHUNK_CELLS // days)
    parts = [
        simulate_days(args, rng, min(chunk, experiments - start), days, clients, scenario, edge)
        for start in range(0, experiments, chunk)
    ]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def day_validity(args: argparse.Namespace, rng, scenario: str, clients: list[int], tolerance: float) -> dict:
    out = {}
    for c in clients:
        verdicts = run_days(args, rng, args.experiments, args.days, c, scenario, 0.0)
        rates = {f"{name}_declared": float((v != 0).mean()) for name, v in verdicts.items()}
        rates["paired_sequential_within_alpha"] = rates["paired_sequential_declared"] <= args.alpha + tolerance
        out[str(c)] = rates
    return out


def median_days(verdicts: np.ndarray) -> float | None:
    """Median over all experiments of the first day naming B better (never, or naming A: past the horizon)."""
    days = np.where(verdicts > 0, verdicts, np.inf).astype(np.float64)
    median = float(np.median(days))
    return median if math.isfinite(median) else None


def day_power(args: argparse.Namespace, rng, clients: list[int]) -> dict:
    out = {}
    for edge_bp in args.edges_bp.split(","):
        per_c = {}
        for c in clients:
            verdicts = run_days(
                args, rng, args.power_experiments, args.horizon_days, c, "correlated", float(edge_bp) * 1e-4
            )
            paired, per_request = verdicts["paired_sequential"], verdicts["per_request_sequential"]
            paired_days, request_days = median_days(paired), median_days(per_request)
            bound = paired_days is not None and request_days is None
            ratio = None
            if paired_days is not None:
                ratio = (args.horizon_days if bound else request_days) / paired_days
            per_c[str(c)] = {
                "paired_sequential_power": float((paired > 0).mean()),
                "paired_sequential_wrong": float((paired < 0).mean()),
                "paired_sequential_median_days": paired_days,
                "per_request_sequential_power": float((per_request > 0).mean()),
                "per_request_sequential_wrong": float((per_request < 0).mean()),
                "per_request_sequential_median_days": request_days,
                "days_ratio_per_request_over_paired": ratio,
                "days_ratio_is_lower_bound": bound,
            }
        out[edge_bp] = per_c
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=2000, help="experiments per scenario (and per C)")
    parser.add_argument("--feedback", type=int, default=2000, help="feedback returns per arm per experiment")
    parser.add_argument("--look-every", type=int, default=20, help="feedbacks per arm between looks")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--tuning-n", type=float, default=DEFAULT_TUNING_N)
    parser.add_argument("--effects", default="0.05,0.1,0.2", help="A/B effects in standard deviations of a return")
    parser.add_argument("--days", type=int, default=250, help="trading days per day-unit experiment")
    parser.add_argument("--clients", default="1,5,20,100", help="clients served a day (comma-separated)")
    parser.add_argument("--correlation", type=float, default=0.9, help="daily correlation of the two strategies")
    parser.add_argument("--day-vol", type=float, default=0.02, help="daily volatility of each arm's return")
    parser.add_argument("--client-noise", type=float, default=0.001, help="a client's own daily noise (std)")
    parser.add_argument("--tuning-days", type=float, default=250, help="tuning_n of the day-level sequence, in days")
    parser.add_argument("--min-days", type=int, default=20, help="first day the paired sequence is read")
    parser.add_argument("--edges-bp", default="5,20", help="B's true edge in basis points a day (power)")
    parser.add_argument("--horizon-days", type=int, default=2000, help="days the power experiments may run")
    parser.add_argument("--power-experiments", type=int, default=1000, help="experiments per edge and C (power)")
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
    clients = [int(c) for c in args.clients.split(",")]
    days_a_a = day_validity(args, rng, "same", clients, tolerance)
    days_correlated = day_validity(args, rng, "correlated", clients, tolerance)
    days_power = day_power(args, rng, clients) if args.power_experiments > 0 else {}
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
                "days": {
                    "days": args.days,
                    "clients_per_day": clients,
                    "correlation": args.correlation,
                    "day_vol": args.day_vol,
                    "client_noise": args.client_noise,
                    "tuning_days": args.tuning_days,
                    "min_days": args.min_days,
                    "monte_carlo_tolerance": tolerance,
                    "horizon_days": args.horizon_days,
                    "power_experiments": args.power_experiments,
                },
                "days_a_a": days_a_a,
                "days_correlated": days_correlated,
                "days_power": days_power,
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
