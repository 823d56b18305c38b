"""What an experiment knows of one arm: requests, errors, latencies, sample-ratio units and its realised returns
(running moments, and the per-period wealth path of its average client for the drawdown guardrail)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from experiments.bandit import ArmReturns


@dataclass
class ArmState:
    requests: int = 0
    errors: int = 0
    units: int = 0  # clients at their first request, and requests without a client id (the sample-ratio test's)
    expected: float = 0.0  # sum over those units of this arm's share at the time
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))
    n: int = 0
    total: float = 0.0
    total_squares: float = 0.0
    log_wealth: float = 0.0  # closed periods' mean returns, compounded
    peak_log_wealth: float = 0.0
    closed_drawdown: float = 0.0
    period: int | None = None  # the open period, and its feedback
    period_n: int = 0
    period_total: float = 0.0

    def add_return(self, value: float, period: int = 0) -> None:
        self.n += 1
        self.total += value
        self.total_squares += value * value
        if self.period is not None and period > self.period:
            self._close_period()
        if self.period is None or period > self.period:
            self.period, self.period_n, self.period_total = period, 0, 0.0
        self.period_n += 1
        self.period_total += value

    def _close_period(self) -> None:
        self.log_wealth += math.log1p(max(self.period_total / self.period_n, -0.999999))
        self.peak_log_wealth = max(self.peak_log_wealth, self.log_wealth)
        self.closed_drawdown = max(self.closed_drawdown, 1.0 - math.exp(self.log_wealth - self.peak_log_wealth))

    def drawdown(self, min_open: int = 1) -> float:
        """The drawdown of the per-period wealth path, the open period's mean so far included once it has
        ``min_open`` returns (one bad return at the start of a day is not a drawdown)."""
        if self.period_n < min_open:
            return self.closed_drawdown
        now = self.log_wealth + math.log1p(max(self.period_total / self.period_n, -0.999999))
        return max(self.closed_drawdown, 1.0 - math.exp(now - max(self.peak_log_wealth, now)))

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        if self.n < 2:
            return 0.0
        return max((self.total_squares - self.n * self.mean**2) / (self.n - 1), 0.0)

    def returns(self) -> ArmReturns:
        return ArmReturns(self.n, self.mean, self.variance)
