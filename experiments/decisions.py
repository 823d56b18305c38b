"""What an experiment decides, each decision recorded with its reason (``Decision``):

- **rollback** a challenger (its share to 0, the control takes it) when a guardrail trips (``tripped``): error rate,
  latency p99, or the drawdown of its average client's wealth (the mean feedback return of each
  ``drawdown_period_s``, a trading day by default, compounded over the periods: pooling every client's returns into
  one sequence would make the drawdown grow with the traffic); or when the sequence says it is worse (its upper end
  below 0).
- **ramp** a challenger to the next step of ``ramp.steps`` once it has ``ramp.min_feedback`` feedback returns at the
  current step and the sequence does not say it is worse.
- **promote** a challenger (all traffic) once it is at the last step and the sequence says it is better (lower end
  above 0).
- Thompson routing (``routing: thompson``) sets the shares from the arms' posteriors instead
  (``experiments.bandit``), with the same guardrails; hedge routing (``routing: hedge``) from the arms' net log
  wealth by exponential weights (``experiments.hedge``), once a new trading day closes.
- **rollback** a challenger whose live daily paired difference to the gate's baseline is inconsistent with its
  validation distribution (``guardrails.consistency``, ``experiments.consistency``); the control cannot be rolled
  back, so its inconsistency is recorded once as a ``consistency`` decision for the operator.

"The sequence" is the paired, day-clustered one once per-asset feedback has come, else the unpaired one
(``Experiment.evidence``).
- An operator's split, promotion, rollback, ramp step and resume (the admin API).

``Decisions`` holds these rules for ``experiments.experiment.Experiment``, whose state they read and set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from core.errors import ConfigError
from experiments.bandit import thompson_shares
from experiments.buckets import normalise
from experiments.hedge import hedge_shares

if TYPE_CHECKING:
    from experiments.arms import ArmState
    from experiments.config import ExperimentConfig
    from experiments.consistency import ConsistencyTest
    from experiments.paired import DailyBook

BANDIT_RECORD_MOVE = 0.02  # bandit shares are re-estimated by sampling: only a move this large changes the split


@dataclass(frozen=True)
class Decision:
    kind: Literal["start", "ramp", "promote", "rollback", "bandit", "hedge", "consistency", "split", "resume", "deploy"]
    arm: str | None
    reason: str
    shares: dict[str, float]


class Decisions:
    """The decision rules of an experiment (mixed into ``Experiment``, which holds the state named below)."""

    config: ExperimentConfig
    arms: dict[str, ArmState]
    shares: dict[str, float]
    decisions: list[Decision]
    stopped: dict[str, str]
    promoted: str | None
    paused: bool
    step_index: dict[str, int]
    _feedback_at_step: dict[str, int]
    _base_split: dict[str, float]
    _bandit_feedback: int
    _hedge_days: int
    _rng: np.random.Generator
    book: DailyBook
    consistency: dict[str, ConsistencyTest]
    consistency_flags: set[str]

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

    # -- decisions ----------------------------------------------------------------------------------------------

    def decide(self) -> list[Decision]:
        """Apply what the evidence calls for now; the decisions taken (also appended to ``self.decisions``).

        Guardrails and the sequential test's rollbacks always apply; ramp steps, promotion and bandit moves only
        while the experiment is not ``paused`` (an operator's split or ramp pauses them)."""
        made: list[Decision] = []
        if self.promoted is not None:
            return made
        control = self.config.control
        if control in self.consistency and self.consistency[control].flagged and control not in self.consistency_flags:
            self.consistency_flags.add(control)
            made.append(self._record("consistency", control, self.consistency[control].reason(), self.shares))
        for name in self.config.challengers:
            if name in self.stopped:
                continue
            reason = self.tripped(name)
            if reason is None and name in self.consistency and self.consistency[name].flagged:
                reason = self.consistency[name].reason()
            comparison = self.evidence(name)
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
        days = len(self.book.closed_days())
        if self.config.routing == "hedge" and not self.paused and days > self._hedge_days:
            self._hedge_days = days
            shares = self._hedge_now()
            moved = max(abs(shares[n] - self.shares.get(n, 0.0)) for n in shares)
            if moved >= BANDIT_RECORD_MOVE:
                made.append(self._record("hedge", None, f"net log wealth over {days} trading days", shares))
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
        if self.config.routing in ("thompson", "hedge"):
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
        if self.config.routing == "hedge":
            return self._hedge_now()
        shares = {
            n: (0.0 if n in self.stopped else self.config.ramp.steps[self.step_index[n]])
            for n in self.config.challengers
        }
        total = sum(shares.values())
        if total > 1.0:  # several challengers ramping at once: scale them into the room there is
            shares = {n: s / total for n, s in shares.items()}
            total = 1.0
        return normalise({self.config.control: 1.0 - total, **shares})

    def _hedge_now(self) -> dict[str, float]:
        live = [n for n in self.arms if n not in self.stopped]
        wealth, days = self.book.cumulative(live)
        shares = hedge_shares(wealth, days, self.config.hedge.daily_range, self.config.hedge.floor)
        return {n: shares.get(n, 0.0) for n in sorted(self.arms)}

    def _bandit_shares(self) -> dict[str, float]:
        live = {n: a.returns() for n, a in self.arms.items() if n not in self.stopped}
        shares = thompson_shares(live, min_share=self.config.min_share, rng=self._rng)
        return {n: shares.get(n, 0.0) for n in sorted(self.arms)}
