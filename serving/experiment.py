"""An A/B experiment between a control arm and challengers: its state, its statistics and its decisions.

Pure Python over numbers (no Serve, no database), so every rule is unit-testable; the Serve app feeds it the
assignments, errors, latencies and realised returns it sees and applies the shares it answers.

Statistics per challenger against the control: the always-valid confidence sequence of the mean return difference
(``serving.sequential``), whose running p-value never rises; Welch's t-test beside it, labelled fixed-horizon (valid
only if read once, at a sample size fixed in advance). Sample-ratio mismatch over all arms (``serving.srm``).

Decisions (``decide``), each recorded with its reason:

- **rollback** a challenger (its share to 0, the control takes it) when a guardrail trips: error rate, latency p99,
  or the drawdown of its average client's wealth (the mean feedback return of each ``drawdown_period_s``, a
  trading day by default, compounded over the periods: pooling every client's returns into one sequence would
  make the drawdown grow with the traffic); or when the sequence says it is worse (its upper end below 0).
- **ramp** a challenger to the next step of ``ramp.steps`` once it has ``ramp.min_feedback`` feedback returns at the
  current step and the sequence does not say it is worse.
- **promote** a challenger (all traffic) once it is at the last step and the sequence says it is better (lower end
  above 0).
- Thompson routing (``routing: thompson``) sets the shares from the arms' posteriors instead (``serving.bandit``),
  with the same guardrails.
"""

from __future__ import annotations

import math
import time
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
    max_drawdown: float = Field(
        default=0.2, gt=0, le=1, description="drawdown of the arm's per-period mean feedback returns, compounded"
    )
    drawdown_period_s: float = Field(
        default=86_400.0, gt=0, description="the period whose mean feedback return is one step of that wealth path"
    )
    min_period_feedback: int = Field(
        default=20, ge=1, description="feedback returns the open period needs before its mean counts in the drawdown"
    )
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
    # The log's experiment column holds name-<8 hex> in 160 characters, which PostgreSQL enforces (SQLite does not).
    name: str = Field(default="default", min_length=1, max_length=128, description="the experiment's name in the log")
    control: str
    challengers: tuple[str, ...] = ()
    routing: Literal["fixed", "ramp", "thompson"] = "fixed"
    split: dict[str, float] | None = Field(default=None, description="routing fixed: the shares (default equal)")
    ramp: Ramp = Ramp()
    min_share: float = Field(default=0.05, ge=0, lt=1, description="routing thompson: the least share of an arm")
    bandit_every_feedback: int = Field(
        default=100,
        ge=1,
        description="routing thompson: new feedback returns between re-estimates of the shares (each move is a "
        "new split version, so it is not re-drawn on every poll)",
    )
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


@dataclass(frozen=True)
class Decision:
    kind: Literal["start", "ramp", "promote", "rollback", "bandit", "split", "resume", "deploy"]
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
        self.paused = False  # an operator's split or ramp step holds the shares until ``resume``
        self._bandit_feedback = 0  # feedback count at the bandit's last re-estimate
        self._clients: set[str] = set()  # client ids seen (their first request is a unit of the sample-ratio test)
        self._base_split = normalise(config.split or {n: 1.0 for n in config.arms})  # routing fixed: the shares
        self.shares = self._initial_shares()
        self.decisions: list[Decision] = [Decision("start", None, f"routing {config.routing}", dict(self.shares))]

    # -- what happened ------------------------------------------------------------------------------------------

    def assigned(
        self,
        arm: str,
        latency_ms: float,
        *,
        error: bool = False,
        shares: Mapping[str, float] | None = None,
        client: str | None = None,
    ) -> None:
        """A request the split routed to ``arm``; ``shares``: the split it was routed under (default the current
        one), for the sample-ratio test; ``error``: a call to ``arm`` failed on the way; ``client``: its client id.

        The sample-ratio test counts units of randomisation: a client id at its first request (sticky assignment
        sends its later ones to the same arm, so they are not independent draws), and every request without one."""
        state = self._arm(arm)
        state.requests += 1
        state.errors += int(error)
        if not error:
            state.latencies_ms.append(latency_ms)
        if client:
            if client in self._clients:
                return
            self._clients.add(client)
        state.units += 1
        for name, share in (self.shares if shares is None else shares).items():
            if name in self.arms:
                self.arms[name].expected += share

    def feedback(self, arm: str, realized_return: float, at: float | None = None) -> None:
        """A realised return of a request ``arm`` answered, reported at time ``at`` (seconds; default now)."""
        if not math.isfinite(realized_return):
            raise ConfigError(f"realized_return: must be finite, got {realized_return}")
        period = int((time.time() if at is None else at) // self.config.guardrails.drawdown_period_s)
        self._arm(arm).add_return(realized_return, period)

    def _arm(self, name: str) -> ArmState:
        try:
            return self.arms[name]
        except KeyError:
            raise ConfigError(
                f"arm: '{name}' is not in experiment '{self.config.name}' (arms {list(self.config.arms)})"
            ) from None

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
            {n: a.units for n, a in self.arms.items()},
            {n: a.expected for n, a in self.arms.items()},
            self.config.srm_alpha,
        )

    def tripped(self, arm: str) -> str | None:
        """The first guardrail ``arm`` breaks, in words, or None.

        Error rate and latency trip only when the arm is also worse than the control on them: a slow machine, a
        cold start or a flaky network hits every arm alike and is no reason to roll one back (measured: a cold
        start's first requests put one arm's p99 over 250 ms in a loaded CI run)."""
        g, state = self.config.guardrails, self.arms[arm]
        control = self.arms[self.config.control]
        if state.requests >= g.min_requests:
            rate = state.errors / state.requests
            control_rate = control.errors / control.requests if control.requests else 0.0
            if rate > g.max_error_rate and rate > control_rate:
                return f"error rate {rate:.1%} above {g.max_error_rate:.1%} (control {control_rate:.1%})"
            if state.latencies_ms:
                p99 = float(np.percentile(np.asarray(state.latencies_ms), 99))
                control_p99 = (
                    float(np.percentile(np.asarray(control.latencies_ms), 99)) if control.latencies_ms else 0.0
                )
                if p99 > g.max_latency_p99_ms and p99 > control_p99:
                    return (
                        f"latency p99 {p99:.0f} ms above {g.max_latency_p99_ms:.0f} ms (control {control_p99:.0f} ms)"
                    )
        drawdown = state.drawdown(g.min_period_feedback)
        if drawdown > g.max_drawdown:
            return f"drawdown of its average client {drawdown:.1%} above {g.max_drawdown:.1%}"
        return None

    def summary(self) -> dict:
        """What ``/ab/stats`` shows of the experiment (documented field by field in ``serving.schemas``)."""
        arms = {}
        for name, state in sorted(self.arms.items()):
            latencies = np.asarray(state.latencies_ms) if state.latencies_ms else None
            arms[name] = {
                "share": self.shares.get(name, 0.0),
                "requests": state.requests,
                "errors": state.errors,
                "error_rate": state.errors / state.requests if state.requests else None,
                "latency_ms": None
                if latencies is None
                else {q: float(np.percentile(latencies, int(q[1:]))) for q in ("p50", "p95", "p99")},
                "feedback": state.n,
                "mean_return": state.mean if state.n else None,
                "std_return": math.sqrt(state.variance) if state.n >= 2 else None,
                "drawdown": state.drawdown(self.config.guardrails.min_period_feedback),
                "stopped": self.stopped.get(name),
            }
        ratio = self.sample_ratio()
        return {
            "name": self.config.name,
            "routing": self.config.routing,
            "control": self.config.control,
            "alpha": self.config.alpha,
            "promoted": self.promoted,
            "arms": arms,
            "comparisons": [self.comparison(name) for name in self.config.challengers],
            "sample_ratio": {
                "p_value": ratio.p_value,
                "chi_square": ratio.chi_square,
                "mismatch": ratio.mismatch,
                "alpha": self.config.srm_alpha,
                "observed": ratio.observed,
                "expected": ratio.expected,
            },
        }

    # -- decisions ----------------------------------------------------------------------------------------------

    def decide(self) -> list[Decision]:
        """Apply what the evidence calls for now; the decisions taken (also appended to ``self.decisions``).

        Guardrails and the sequential test's rollbacks always apply; ramp steps, promotion and bandit moves only
        while the experiment is not ``paused`` (an operator's split or ramp pauses them)."""
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
                made.append(self._stop(name, reason))
                continue
            if self.config.routing != "ramp" or self.paused:
                continue
            state = self.arms[name]
            at_step = state.n - self._feedback_at_step[name]
            last = len(self.config.ramp.steps) - 1
            if self.step_index[name] < last and at_step >= self.config.ramp.min_feedback:
                share = self.config.ramp.steps[self.step_index[name] + 1]
                made.append(
                    self._to_step(
                        name,
                        self.step_index[name] + 1,
                        f"{at_step} feedback returns at the last step, not worse: to {share:.0%}",
                    )
                )
            elif self.step_index[name] == last and comparison["sequential"]["lower"] > 0:
                made.append(self.promote(name, comparison["verdict"], kind="promote"))
                return made
        feedback = sum(a.n for a in self.arms.values())
        if (
            self.config.routing == "thompson"
            and not self.paused
            and feedback - self._bandit_feedback >= self.config.bandit_every_feedback
        ):
            self._bandit_feedback = feedback
            shares = self._bandit_shares()
            moved = max(abs(shares[n] - self.shares.get(n, 0.0)) for n in shares)
            if moved >= BANDIT_RECORD_MOVE:
                made.append(self._record("bandit", None, "posterior probability of being best", shares))
        return made

    # -- an operator's decisions (admin API) ---------------------------------------------------------------------

    def set_split(self, shares: Mapping[str, float], reason: str) -> Decision:
        """An operator's split: arms left out get 0. It pauses ramp steps and bandit moves (``resume`` restarts
        them); guardrails keep applying."""
        unknown = sorted(set(shares) - set(self.arms))
        if unknown:
            raise ConfigError(f"split: unknown arm(s) {unknown}; the experiment's arms are {sorted(self.arms)}")
        if self.promoted is not None:
            raise ConfigError(f"split: '{self.promoted}' was promoted; start a new experiment to split again")
        target = normalise({**{n: 0.0 for n in self.arms}, **shares})
        stopped = sorted(n for n, share in target.items() if share > 0 and n in self.stopped)
        if stopped:
            raise ConfigError(
                f"split: {stopped} were rolled back ({self.stopped[stopped[0]]}); they cannot get traffic"
            )
        self._base_split = dict(target)
        self.paused = self.config.routing != "fixed"
        return self._record("split", None, reason, target)

    def promote(self, arm: str, reason: str, *, kind: Literal["promote"] = "promote") -> Decision:
        """All traffic to ``arm`` from now on; the experiment ends (no more automatic decisions)."""
        self._arm(arm)
        if arm in self.stopped:
            raise ConfigError(f"arm: '{arm}' was rolled back ({self.stopped[arm]}); it cannot be promoted")
        self.promoted = arm
        return self._record(kind, arm, reason, {n: float(n == arm) for n in sorted(self.arms)})

    def rollback(self, arm: str | None, reason: str) -> list[Decision]:
        """Stop ``arm`` (every challenger when None): its traffic goes to the control."""
        if arm is not None and arm not in self.config.challengers:
            raise ConfigError(f"arm: '{arm}' is not a challenger of the experiment ({list(self.config.challengers)})")
        names = [arm] if arm is not None else [n for n in self.config.challengers if n not in self.stopped]
        if self.promoted is not None and self.promoted in names:
            self.promoted = None
        return [self._stop(name, reason) for name in names]

    def ramp_to(self, arm: str, step: int, reason: str) -> Decision:
        """Put challenger ``arm`` at ramp step ``step`` (an index of ``ramp.steps``); pauses automatic ramping."""
        if self.config.routing != "ramp":
            raise ConfigError(f"routing: the experiment routes by '{self.config.routing}', not by ramp steps")
        if arm not in self.config.challengers:
            raise ConfigError(f"arm: '{arm}' is not a challenger of the experiment ({list(self.config.challengers)})")
        if not 0 <= step < len(self.config.ramp.steps):
            raise ConfigError(f"step: an index of ramp.steps {list(self.config.ramp.steps)}, got {step}")
        if arm in self.stopped:
            raise ConfigError(f"arm: '{arm}' was rolled back ({self.stopped[arm]}); it cannot ramp")
        self.paused = True
        return self._to_step(arm, step, reason)

    def resume(self, reason: str) -> Decision:
        """Let ramp steps and bandit moves happen again."""
        self.paused = False
        shares = self._shares_now() if self.config.routing != "fixed" else self.shares
        return self._record("resume", None, reason, shares)

    # -- state for rebuilds ---------------------------------------------------------------------------------------

    def control_state(self) -> dict:
        """What the decisions so far have set (JSON): saved with every decision, so a rebuild restores it."""
        return {
            "stopped": dict(self.stopped),
            "promoted": self.promoted,
            "paused": self.paused,
            "step_index": dict(self.step_index),
            "feedback_at_step": dict(self._feedback_at_step),
            "base_split": dict(self._base_split),
            "shares": dict(self.shares),
            "p_values": {name: p.value for name, p in self._p.items()},
            "bandit_feedback": self._bandit_feedback,
        }

    def restore(self, state: Mapping) -> None:
        """Take the control state a decision saved (statistics come from replaying the log)."""
        self.stopped = dict(state["stopped"])
        self.promoted = state["promoted"]
        self.paused = bool(state["paused"])
        self.step_index = {n: int(state["step_index"].get(n, 0)) for n in self.config.challengers}
        self._feedback_at_step = {n: int(state["feedback_at_step"].get(n, 0)) for n in self.config.challengers}
        self._base_split = dict(state["base_split"])
        self.shares = {n: float(state["shares"].get(n, 0.0)) for n in sorted(self.arms)}
        for name, value in state.get("p_values", {}).items():
            if name in self._p:
                self._p[name].value = float(value)
        self._bandit_feedback = int(state.get("bandit_feedback", 0))

    # -- applying ------------------------------------------------------------------------------------------------

    def _stop(self, arm: str, reason: str) -> Decision:
        self.stopped[arm] = reason
        shares = dict(self.shares)
        shares[self.config.control] = shares.get(self.config.control, 0.0) + shares.get(arm, 0.0)
        shares[arm] = 0.0
        self._base_split = normalise(shares)
        return self._record("rollback", arm, reason, self._base_split)

    def _to_step(self, arm: str, step: int, reason: str) -> Decision:
        self.step_index[arm] = step
        self._feedback_at_step[arm] = self.arms[arm].n
        return self._record("ramp", arm, reason, self._shares_now())

    def _record(self, kind: str, arm: str | None, reason: str, shares: Mapping[str, float]) -> Decision:
        self.shares = {n: float(shares.get(n, 0.0)) for n in sorted(self.arms)}
        decision = Decision(kind, arm, reason, dict(self.shares))  # type: ignore[arg-type]
        self.decisions.append(decision)
        return decision

    def _initial_shares(self) -> dict[str, float]:
        if self.config.routing == "fixed":
            return {n: self._base_split.get(n, 0.0) for n in sorted(self.config.arms)}
        if self.config.routing == "thompson":
            return {n: 1.0 / len(self.config.arms) for n in sorted(self.config.arms)}
        return self._shares_now()

    def _shares_now(self) -> dict[str, float]:
        """Ramp (and rollback, promotion) shares: live challengers at their steps, the control the rest."""
        if self.promoted is not None:
            return {n: float(n == self.promoted) for n in sorted(self.arms)}
        if self.config.routing == "fixed":
            return dict(self._base_split)
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
