"""Full-information comparison of served agents, the trading day as the unit.

A portfolio small enough not to move prices earns ``w . r`` for any allocation ``w`` once the period's asset returns
``r`` are known, so every agent scored on a request (``experiments.log_schema.Scores``) has an observable net return
on it, not only the one that answered. Two consequences decide the statistics here:

- **Pairs.** Each challenger's net log growth minus the control's on the *same* requests removes the market move
  both share; the spread left is the agents' tracking difference, several times smaller than either's return.
- **Days, not requests.** Clients served on the same trading day share that day's market move, so their outcomes are
  not independent draws: counting requests as samples overstates the evidence (``benchmarks/ab_validity.py``). Per
  day, each agent's net log growth is averaged over that day's requests; the paired daily difference is the sample.

The always-valid confidence sequence of ``experiments.sequential`` runs over closed days (a day closes once a later
day has been reported: its mean no longer moves), tuned to ``tuning_days``. Beside it: the variance ratio of the
paired daily difference to the unpaired one (``Var(a - b) / (Var(a) + Var(b))``), and the days a verdict would need
if the observed edge and spread held (``days_to_verdict``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from experiments.sequential import RunningPValue, confidence_sequence, sequence_bounds

DEFAULT_TUNING_DAYS = 250.0  # a trading year: the sequence is tightest near it
# Days before the sequence is read: with 2-3 days its variance estimate is too noisy and the always-valid guarantee
# fails (benchmarks/ab_validity.py: 9-10% false positives read from day 2, 2.4% from day 10, 2.1% from day 20).
DEFAULT_MIN_DAYS = 20


@dataclass
class _Day:
    sums: dict[str, float] = field(default_factory=dict)  # agent -> sum of net log growth over the day's requests
    counts: dict[str, int] = field(default_factory=dict)
    pair_sums: dict[tuple[str, str], float] = field(default_factory=dict)  # (a, b) -> sum of a - b, same requests
    pair_counts: dict[tuple[str, str], int] = field(default_factory=dict)


class DailyBook:
    """Every scored agent's net log growth, per trading day, and the paired differences of ``pairs`` on the requests
    that scored both."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pairs = list(dict.fromkeys(pairs))
        self.days: dict[str, _Day] = {}
        self.latest: str | None = None  # the latest day reported: every earlier one is closed
        self.requests = 0

    def add(self, as_of: str, growth: Mapping[str, float]) -> None:
        """One request's net log growth per scored agent, for trading day ``as_of`` (ISO date)."""
        day = self.days.setdefault(as_of, _Day())
        for name, value in growth.items():
            day.sums[name] = day.sums.get(name, 0.0) + value
            day.counts[name] = day.counts.get(name, 0) + 1
        for a, b in self.pairs:
            if a in growth and b in growth:
                day.pair_sums[(a, b)] = day.pair_sums.get((a, b), 0.0) + growth[a] - growth[b]
                day.pair_counts[(a, b)] = day.pair_counts.get((a, b), 0) + 1
        self.latest = as_of if self.latest is None else max(self.latest, as_of)
        self.requests += 1

    def closed_days(self) -> list[str]:
        return sorted(d for d in self.days if self.latest is not None and d < self.latest)

    def differences(self, a: str, b: str) -> np.ndarray:
        """Closed days' mean paired difference ``a - b`` (days on which both were scored), oldest first."""
        values = []
        for date in self.closed_days():
            day = self.days[date]
            if day.pair_counts.get((a, b)):
                values.append(day.pair_sums[(a, b)] / day.pair_counts[(a, b)])
        return np.asarray(values, dtype=np.float64)

    def means(self, name: str, days: list[str] | None = None) -> np.ndarray:
        """Closed days' mean net log growth of ``name`` (NaN on a day it was not scored)."""
        out = []
        for date in self.closed_days() if days is None else days:
            day = self.days[date]
            out.append(day.sums[name] / day.counts[name] if day.counts.get(name) else math.nan)
        return np.asarray(out, dtype=np.float64)

    def cumulative(self, names: Iterable[str]) -> tuple[dict[str, float], int]:
        """Each agent's net log wealth over the closed days (the mean client's), and the number of those days."""
        days = self.closed_days()
        return {name: float(np.nansum(self.means(name, days))) for name in names}, len(days)


def days_to_verdict(edge: float, spread: float, alpha: float, tuning_days: float, horizon: int = 10**7) -> int | None:
    """The fewest days at which the sequence's half-width falls below ``|edge|`` if the daily paired difference
    kept mean ``edge`` and standard deviation ``spread``; None when it never does within ``horizon`` days."""
    if not (math.isfinite(edge) and math.isfinite(spread)) or spread <= 0 or edge == 0:
        return None
    days = np.unique(np.geomspace(2, horizon, 4_000).astype(np.int64))
    half, _ = sequence_bounds(np.zeros(len(days)), spread**2 / days, days, alpha, tuning_days)
    decided = np.nonzero(half < abs(edge))[0]
    return None if len(decided) == 0 else int(days[decided[0]])


@dataclass
class PairedComparison:
    """One challenger against the control over closed days (its running always-valid p-value kept here)."""

    challenger: str
    control: str
    alpha: float
    tuning_days: float = DEFAULT_TUNING_DAYS
    min_days: int = DEFAULT_MIN_DAYS
    running: RunningPValue = field(default_factory=RunningPValue)

    def summary(self, book: DailyBook) -> dict:
        d = book.differences(self.challenger, self.control)
        n = len(d)
        mean = float(d.mean()) if n else None
        spread = float(d.std(ddof=1)) if n >= 2 else None
        sequence = confidence_sequence(
            mean or 0.0,
            (spread**2 / n) if spread is not None else math.nan,
            n if n >= max(self.min_days, 2) else 0,
            self.alpha,
            self.tuning_days,
        )
        p_value = self.running.update(sequence.p_value)
        ratio = None
        needed = days_to_verdict(mean or 0.0, spread or 0.0, self.alpha, self.tuning_days)
        if n >= 2:
            days = book.closed_days()
            a, b = book.means(self.challenger, days), book.means(self.control, days)
            both = np.isfinite(a) & np.isfinite(b)
            unpaired = float(np.var(a[both], ddof=1) + np.var(b[both], ddof=1)) if both.sum() >= 2 else 0.0
            ratio = float(np.var(d, ddof=1) / unpaired) if unpaired > 0 else None
        if sequence.lower > 0:
            verdict = (
                f"{self.challenger} grows faster than {self.control} (paired, {n} days, always-valid p = {p_value:.3g})"
            )
        elif sequence.upper < 0:
            verdict = (
                f"{self.challenger} grows slower than {self.control} (paired, {n} days, always-valid p = {p_value:.3g})"
            )
        else:
            verdict = f"no difference shown yet after {n} trading days (read from day {self.min_days}); " + (
                f"at the observed edge and spread a verdict needs about {needed} days"
                if needed is not None
                else "too few days to forecast"
            )
        return {
            "challenger": self.challenger,
            "control": self.control,
            "days": n,
            "mean_daily_difference": mean,
            "daily_std": spread,
            "sequential": {"lower": sequence.lower, "upper": sequence.upper, "p_value": p_value},
            "variance_ratio": ratio,
            "days_to_verdict": needed,
            "verdict": verdict,
        }
