"""An A/B experiment between a control arm and challengers: its state, its statistics and its decisions.

Pure Python over numbers (no Serve, no database), so every rule is unit-testable; the Serve app feeds it the
assignments, errors, latencies and realised returns it sees and applies the shares it answers.

Statistics per challenger against the control: the always-valid confidence sequence of the mean return difference
(``serving.sequential``), whose running p-value never rises; Welch's t-test beside it, labelled fixed-horizon (valid
only if read once, at a sample size fixed in advance). Sample-ratio mismatch over all arms (``serving.srm``).

Decisions (``decide``), each recorded with its reason:

- **rollback** a challenger (its share to 0, the control takes it) when a guardrail trips: error rate, latency p99,
  or the drawdown of the wealth its feedback returns compound to; or when the sequence says it is worse
  (its upper end below 0).
- **ramp** a challenger to the next step of ``ramp.steps`` once it has ``ramp.min_feedback`` feedback returns at the
  current step and the sequence does not say it is worse.
- **promote** a challenger (all traffic) once it is at the last step and the sequence says it is better (lower end
  above 0).
- Thompson routing (``routing: thompson``) sets the shares from the arms' posteriors instead (``serving.bandit``),
  with the same guardrails.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from scipy import stats as scipy_stats

from core.config import FrozenConfig
from core.errors import ConfigError
from serving.bandit import ArmReturns, thompson_shares
from serving.buckets import normalise
from serving.sequential import DEFAULT_TUNING_N, RunningPValue, confidence_sequence
from serving.srm import SRM_ALPHA, sample_ratio_test

BANDIT_RECORD_MOVE = 0.02  # bandit shares are re-estimated by sampling: only a move this large changes the split


class Guardrails(FrozenConfig):
    max_error_rate: float = Field(default=0.05, ge=0, le=1, description="errors per request above this trip it")
    max_latency_p99_ms: float = Field(default=250.0, gt=0, description="latency p99 above this trips it")
    max_drawdown: float = Field(default=0.2, gt=0, le=1, description="drawdown of the arm's compounded feedback")
    min_requests: int = Field(default=50, ge=1, description="requests an arm needs before its rates are judged")


class Ramp(FrozenConfig):
    steps: tuple[float, ...] = Field(default=(0.05, 0.25, 0.5, 1.0), description="challenger shares, in order")
    min_feedback: int = Field(default=200, ge=1, description="feedback returns at a step before the next")

    @model_validator(mode="after")
    def _increasing(self) -> Ramp:
        if not self.steps or any(not 0 < s <= 1 for s in self.steps) or list(self.steps) != sorted(set(self.steps)):
            raise ValueError(f"steps: increasing shares in (0, 1], got {list(self.steps)}")
        return self


class ExperimentConfig(FrozenConfig):
    name: str = "default"
    control: str
    challengers: tuple[str, ...] = ()
    routing: Literal["fixed", "ramp", "thompson"] = "fixed"
    split: dict[str, float] | None = Field(default=None, description="routing fixed: the shares (default equal)")
    ramp: Ramp = Ramp()
    min_share: float = Field(default=0.05, ge=0, lt=1, description="routing thompson: the least share of an arm")
    alpha: float = Field(default=0.05, gt=0, lt=1)
    tuning_n: float = Field(default=DEFAULT_TUNING_N, gt=0, description="feedback count the sequence is tuned to")
    srm_alpha: float = Field(default=SRM_ALPHA, gt=0, lt=1)
    guardrails: Guardrails = Guardrails()

    @model_validator(mode="after")
    def _arms(self) -> ExperimentConfig:
        if self.control in self.challengers:
            raise ValueError(f"challengers: the control '{self.control}' cannot also be a challenger")
        if self.split is not None and set(self.split) - set(self.arms):
            raise ValueError(f"split: names {sorted(set(self.split) - set(self.arms))} are not arms of the experiment")
        return self

    @property
    def arms(self) -> tuple[str, ...]:
        return (self.control, *self.challengers)


@dataclass
class ArmState:
    requests: int = 0
    errors: int = 0
    expected: float = 0.0  # sum over assignments of this arm's share at the time (for the sample-ratio test)
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))
    n: int = 0
    total: float = 0.0
    total_squares: float = 0.0
    log_wealth: float = 0.0
    peak_log_wealth: float = 0.0
    max_drawdown: float = 0.0

    def add_return(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.total_squares += value * value
        self.log_wealth += math.log1p(max(value, -0.999999))
        self.peak_log_wealth = max(self.peak_log_wealth, self.log_wealth)
        self.max_drawdown = max(self.max_drawdown, 1.0 - math.exp(self.log_wealth - self.peak_log_wealth))

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


@dataclass(frozen=True)
class Decision:
    kind: Literal["start", "ramp", "promote", "rollback", "bandit", "split"]
    arm: str | None
    reason: str
    shares: dict[str, float]


class Experiment:
    def __init__(self, config: ExperimentConfig, rng: np.random.Generator | None = None) -> None:
        self.config = config
        self.arms = {name: ArmState() for name in config.arms}
        self._p = {name: RunningPValue() for name in config.challengers}
        self._rng = rng or np.random.default_rng()
        self.step_index = {name: 0 for name in config.challengers}
        self._feedback_at_step = {name: 0 for name in config.challengers}
        self.stopped: dict[str, str] = {}  # challenger -> why it gets no traffic any more
        self.promoted: str | None = None
        self.shares = self._initial_shares()
        self.decisions: list[Decision] = [Decision("start", None, f"routing {config.routing}", dict(self.shares))]

    # -- what happened ------------------------------------------------------------------------------------------

    def assigned(self, arm: str, latency_ms: float, *, error: bool = False) -> None:
        state = self._arm(arm)
        state.requests += 1
        state.errors += int(error)
        if not error:
            state.latencies_ms.append(latency_ms)
        for name, share in self.shares.items():
            self.arms[name].expected += share

    def feedback(self, arm: str, realized_return: float) -> None:
        if not math.isfinite(realized_return):
            raise ConfigError(f"realized_return: must be finite, got {realized_return}")
        self._arm(arm).add_return(realized_return)

    def _arm(self, name: str) -> ArmState:
        try:
            return self.arms[name]
        except KeyError:
            raise ConfigError(f"arm '{name}' is not in experiment '{self.config.name}'") from None

    # -- statistics ---------------------------------------------------------------------------------------------

    def comparison(self, challenger: str) -> dict:
        control, other = self.arms[self.config.control], self.arms[challenger]
        difference = other.mean - control.mean
        enough = control.n >= 2 and other.n >= 2
        variance = control.variance / control.n + other.variance / other.n if enough else float("nan")
        sequence = confidence_sequence(
            difference, variance, control.n + other.n if enough else 0, self.config.alpha, self.config.tuning_n
        )
        p_value = self._p[challenger].update(sequence.p_value)
        welch = None
        if enough and variance > 0:
            t = difference / math.sqrt(variance)
            dof = variance**2 / (
                (control.variance / control.n) ** 2 / (control.n - 1) + (other.variance / other.n) ** 2 / (other.n - 1)
            )
            welch = {"t_statistic": t, "p_value": float(2 * scipy_stats.t.sf(abs(t), dof))}
        if sequence.lower > 0:
            verdict = f"{challenger} earns more than {self.config.control} (always-valid p = {p_value:.3g})"
        elif sequence.upper < 0:
            verdict = f"{challenger} earns less than {self.config.control} (always-valid p = {p_value:.3g})"
        else:
            verdict = f"no difference shown yet ({other.n} vs {control.n} feedback returns): keep collecting"
        return {
            "challenger": challenger,
            "control": self.config.control,
            "mean_difference": difference,
            "sequential": {"lower": sequence.lower, "upper": sequence.upper, "p_value": p_value},
            "fixed_horizon_welch": welch,
            "verdict": verdict,
        }

    def sample_ratio(self):
        return sample_ratio_test(
            {n: a.requests for n, a in self.arms.items()},
            {n: a.expected for n, a in self.arms.items()},
            self.config.srm_alpha,
        )

    def tripped(self, arm: str) -> str | None:
        """The first guardrail ``arm`` breaks, in words, or None."""
        g, state = self.config.guardrails, self.arms[arm]
        if state.requests >= g.min_requests:
            rate = state.errors / state.requests
            if rate > g.max_error_rate:
                return f"error rate {rate:.1%} above {g.max_error_rate:.1%}"
            if state.latencies_ms:
                p99 = float(np.percentile(np.asarray(state.latencies_ms), 99))
                if p99 > g.max_latency_p99_ms:
                    return f"latency p99 {p99:.0f} ms above {g.max_latency_p99_ms:.0f} ms"
        if state.max_drawdown > g.max_drawdown:
            return f"drawdown of its feedback {state.max_drawdown:.1%} above {g.max_drawdown:.1%}"
        return None

    # -- decisions ----------------------------------------------------------------------------------------------

    def decide(self) -> list[Decision]:
        """Apply what the evidence calls for now; the decisions taken (also appended to ``self.decisions``)."""
        made: list[Decision] = []
        if self.promoted is not None:
            return made
        for name in self.config.challengers:
            if name in self.stopped:
                continue
            reason = self.tripped(name)
            comparison = self.comparison(name)
            if reason is None and comparison["sequential"]["upper"] < 0:
                reason = comparison["verdict"]
            if reason is not None:
                self.stopped[name] = reason
                made.append(self._apply("rollback", name, reason))
                continue
            if self.config.routing != "ramp":
                continue
            state = self.arms[name]
            at_step = state.n - self._feedback_at_step[name]
            last = len(self.config.ramp.steps) - 1
            if self.step_index[name] < last and at_step >= self.config.ramp.min_feedback:
                self.step_index[name] += 1
                self._feedback_at_step[name] = state.n
                share = self.config.ramp.steps[self.step_index[name]]
                made.append(
                    self._apply("ramp", name, f"{at_step} feedback returns at the last step, not worse: to {share:.0%}")
                )
            elif self.step_index[name] == last and comparison["sequential"]["lower"] > 0:
                self.promoted = name
                made.append(self._apply("promote", name, comparison["verdict"]))
                return made
        if self.config.routing == "thompson":
            shares = self._bandit_shares()
            moved = max(abs(shares[n] - self.shares.get(n, 0.0)) for n in shares)
            if moved >= BANDIT_RECORD_MOVE:
                self.shares = shares
                made.append(Decision("bandit", None, "posterior probability of being best", dict(shares)))
                self.decisions.append(made[-1])
        return made

    def set_split(self, shares: Mapping[str, float], reason: str) -> Decision:
        """An operator's split (admin API); guardrails keep applying."""
        unknown = sorted(set(shares) - set(self.arms))
        if unknown:
            raise ConfigError(f"split: unknown arm(s) {unknown}; the experiment's arms are {sorted(self.arms)}")
        self.shares = normalise({**{n: 0.0 for n in self.arms}, **shares})
        decision = Decision("split", None, reason, dict(self.shares))
        self.decisions.append(decision)
        return decision

    def _apply(self, kind: Literal["ramp", "promote", "rollback"], arm: str, reason: str) -> Decision:
        self.shares = self._shares_now()
        decision = Decision(kind, arm, reason, dict(self.shares))
        self.decisions.append(decision)
        return decision

    def _initial_shares(self) -> dict[str, float]:
        if self.config.routing == "fixed":
            return normalise(self.config.split or {n: 1.0 for n in self.config.arms})
        if self.config.routing == "thompson":
            return {n: 1.0 / len(self.config.arms) for n in sorted(self.config.arms)}
        return self._shares_now()

    def _shares_now(self) -> dict[str, float]:
        """Ramp (and rollback, promotion) shares: live challengers at their steps, the control the rest."""
        if self.promoted is not None:
            return {n: float(n == self.promoted) for n in sorted(self.arms)}
        if self.config.routing == "fixed":
            base = self.config.split or {n: 1.0 for n in self.config.arms}
            live = {n: (0.0 if n in self.stopped else w) for n, w in base.items()}
            live[self.config.control] = max(live.get(self.config.control, 0.0), 1e-12)
            return normalise(live)
        if self.config.routing == "thompson":
            return self._bandit_shares()
        shares = {
            n: (0.0 if n in self.stopped else self.config.ramp.steps[self.step_index[n]])
            for n in self.config.challengers
        }
        total = sum(shares.values())
        if total > 1.0:  # several challengers ramping at once: scale them into the room there is
            shares = {n: s / total for n, s in shares.items()}
            total = 1.0
        return normalise({self.config.control: 1.0 - total, **shares})

    def _bandit_shares(self) -> dict[str, float]:
        live = {n: a.returns() for n, a in self.arms.items() if n not in self.stopped}
        shares = thompson_shares(live, min_share=self.config.min_share, rng=self._rng)
        return {n: shares.get(n, 0.0) for n in sorted(self.arms)}
