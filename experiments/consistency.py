"""Does a live agent behave as its validation said? An always-valid test of its daily paired difference to the
gate's baseline against the distribution the promotion gate measured on validation (``Expectation``).

Separating a few basis points a day between two good agents takes thousands of trading days; telling a *broken*
agent (wrong data, a feature bug, a model trained on another market) from the one validation measured is faster
where such an agent's difference to 1/N moves out of the range validation saw, in mean or, more often, in spread.

The spread of a good agent's difference to 1/N is not one number: it follows the market's volatility regime (on the
built-in market, 20-day windows of validation range from 0.5% to 4.4% a day for the same PPO). So the null is a band:
every day's difference is normal with a mean within ``mean +- 2 std / sqrt(days)`` (validation's mean and twice its
standard error) and a standard deviation anywhere in ``[std_low, std_high]``, the 1st and 99th percentiles of the
spread over validation's 20-day windows (``training.gate`` records them); the day's member of the null may change
from day to day.

The test is a test martingale (Ville's inequality: under any such null it ever exceeds ``1/alpha`` with probability
at most ``alpha``, however often it is read). Each closed day's difference ``x`` multiplies the e-value by

    q(x) / sup_{theta in null} p_theta(x)

where ``q`` is normal with the mean and spread of the live days *before* this one (a predictable plug-in
alternative, Ramdas et al. 2023, "Game-theoretic statistics and safe anytime-valid inference", section 4; nothing
is staked on the first ``warmup_days``, whose factor is 1). Taking the supremum over the null per day keeps each
factor's expectation at most 1 under whichever null member holds that day. An arm is flagged once the e-value
reaches ``1/alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pydantic import Field

from core.config import FrozenConfig

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class Expectation(FrozenConfig):
    """An agent's validation distribution of daily paired differences in net log growth to the gate's baseline."""

    baseline: str = Field(description="what the differences are to (the gate's baseline)")
    mean: float = Field(description="mean daily difference on validation")
    std: float = Field(ge=0.0, description="its standard deviation across validation days")
    days: int = Field(ge=2, description="the validation days (path-days on law paths) it was measured over")
    std_low: float | None = Field(
        default=None, ge=0.0, description="1st percentile of the spread over validation's 20-day windows"
    )
    std_high: float | None = Field(
        default=None, ge=0.0, description="99th percentile of the spread over validation's 20-day windows"
    )

    def band(self) -> tuple[float, float]:
        """The null's range of daily spreads: the recorded percentiles, widened to include ``std`` widened by twice
        its own standard error (the whole band when percentiles were not recorded)."""
        error = 2.0 / math.sqrt(2.0 * self.days)
        low, high = self.std * max(1.0 - error, 0.5), self.std * (1.0 + error)
        return min(low, self.std_low if self.std_low is not None else low), max(
            high, self.std_high if self.std_high is not None else high
        )


def _log_normal(x: float, mean: float, std: float) -> float:
    z = (x - mean) / std
    return -0.5 * z * z - math.log(std) - LOG_SQRT_2PI


@dataclass
class ConsistencyTest:
    """The e-value of the live daily differences against ``expected`` (see the module docstring)."""

    expected: Expectation
    alpha: float = 0.05
    warmup_days: int = 5
    days: int = 0
    log_e: float = 0.0
    max_log_e: float = 0.0
    _sum: float = 0.0
    _squares: float = 0.0
    flagged_on_day: int | None = field(default=None)

    @property
    def testable(self) -> bool:
        """An agent identical to its baseline (spread 0: the baseline itself) has nothing to test."""
        return self.expected.std > 0

    def update(self, x: float) -> None:
        """One closed day's paired difference."""
        if not self.testable or not math.isfinite(x):
            return
        e, n = self.expected, self.days
        if n >= self.warmup_days:  # before, nothing is staked: the factor is 1
            mean = self._sum / n
            std = math.sqrt(max((self._squares - n * mean * mean) / (n - 1), (1e-3 * e.std) ** 2))
            mean_tol = 2.0 * e.std / math.sqrt(e.days)
            std_lo, std_hi = e.band()
            null_mean = min(max(x, e.mean - mean_tol), e.mean + mean_tol)
            null_std = min(max(abs(x - null_mean), std_lo), std_hi)
            self.log_e += _log_normal(x, mean, std) - _log_normal(x, null_mean, null_std)
            self.max_log_e = max(self.max_log_e, self.log_e)
        self.days += 1
        self._sum += x
        self._squares += x * x
        if self.flagged_on_day is None and self.log_e >= math.log(1.0 / self.alpha):
            self.flagged_on_day = self.days

    @property
    def flagged(self) -> bool:
        return self.flagged_on_day is not None

    def summary(self) -> dict:
        n = self.days
        live_mean = self._sum / n if n else None
        live_std = math.sqrt(max(self._squares / n - (self._sum / n) ** 2, 0.0) * n / (n - 1)) if n >= 2 else None
        e = self.expected
        reading = (
            "not testable: identical to its baseline"
            if not self.testable
            else f"inconsistent with validation since day {self.flagged_on_day}"
            if self.flagged
            else f"consistent with validation so far ({n} days)"
        )
        return {
            "baseline": e.baseline,
            "days": n,
            "live_mean": live_mean,
            "live_std": live_std,
            "validation_mean": e.mean,
            "validation_std": e.std,
            "validation_days": e.days,
            "validation_std_band": list(e.band()),
            "e_value": math.exp(min(self.log_e, 700.0)),
            "threshold": 1.0 / self.alpha,
            "flagged": self.flagged,
            "reading": reading,
        }

    def reason(self) -> str:
        s = self.summary()
        return (
            f"inconsistent with its validation: live paired difference to {s['baseline']} "
            f"{1e4 * (s['live_mean'] or 0):+.1f} bp/day, spread {1e4 * (s['live_std'] or 0):.1f} bp over {s['days']} "
            f"days vs validation {1e4 * s['validation_mean']:+.1f} bp/day, spread {1e4 * s['validation_std']:.1f} bp "
            f"(20-day windows {1e4 * s['validation_std_band'][0]:.1f}-{1e4 * s['validation_std_band'][1]:.1f} bp) "
            f"(e-value {s['e_value']:.3g} >= {s['threshold']:.0f})"
        )
