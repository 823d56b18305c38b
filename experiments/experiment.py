"""An A/B experiment between a control arm and challengers: its state, what it has seen, and its statistics.

Pure Python over numbers (no Serve, no database), so every rule is unit-testable; the Serve app feeds it the
assignments, errors, latencies and realised returns it sees and applies the shares it answers.

Statistics per challenger against the control, two kinds:

- **Paired, by day** (``experiments.paired``), from per-asset feedback: every arm's net log growth on every request,
  averaged per trading day, the challenger's difference to the control over closed days in an always-valid
  confidence sequence. The decisions use it once any per-asset feedback has come.
- **Unpaired, by request**, from scalar feedback (``realized_return``, the answering arm's only): the always-valid
  confidence sequence of the mean return difference (``experiments.sequential``), whose running p-value never rises;
  Welch's t-test beside it, labelled fixed-horizon (valid only if read once, at a sample size fixed in advance).

Sample-ratio mismatch over all arms (``experiments.srm``); with per-asset feedback, each arm's consistency with its
validation distribution (``experiments.consistency``). The decisions it takes on them are ``experiments.decisions``; the control state they set is
saved with every decision and ``restore`` takes it back after a restart (the statistics come from replaying the log).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import numpy as np
from scipy import stats as scipy_stats

from core.errors import ConfigError
from experiments.arms import ArmState
from experiments.buckets import normalise
from experiments.config import ExperimentConfig
from experiments.consistency import ConsistencyTest, Expectation
from experiments.decisions import Decision, Decisions
from experiments.paired import DailyBook, PairedComparison
from experiments.sequential import RunningPValue, confidence_sequence
from experiments.srm import sample_ratio_test


def check_expectations(config: ExperimentConfig, expectations: Mapping[str, Expectation] | None) -> None:
    """``guardrails.consistency`` needs every arm's validation distribution; a ``ConfigError`` naming the field and
    the arms without one otherwise."""
    if not config.guardrails.consistency:
        return
    missing = sorted(set(config.arms) - set(expectations or {}))
    if missing:
        raise ConfigError(
            f"guardrails.consistency: no validation distribution stored for {missing} (the promotion gate writes one "
            "per agent and baseline to the models folder's registry.json; run the gate on these exports, e.g. "
            "rlportfolio train or sweep with gate enabled, or turn the guardrail off)"
        )


class Experiment(Decisions):
    def __init__(
        self,
        config: ExperimentConfig,
        rng: np.random.Generator | None = None,
        expectations: Mapping[str, Expectation] | None = None,
    ) -> None:
        """:param expectations: arm -> its validation distribution of daily paired differences to the gate's
        baseline (``guardrails.consistency`` tests the live ones against it)."""
        check_expectations(config, expectations)
        self.config = config
        checked = (
            {a: e for a, e in (expectations or {}).items() if a in config.arms} if config.guardrails.consistency else {}
        )
        self.consistency = {arm: ConsistencyTest(e, config.alpha) for arm, e in checked.items()}
        pairs = [(c, config.control) for c in config.challengers] + [(a, e.baseline) for a, e in checked.items()]
        self.book = DailyBook(pairs)
        self._tested_days: set[str] = set()  # closed days the consistency tests have taken
        self._paired = {
            c: PairedComparison(c, config.control, config.alpha, config.tuning_days, config.min_days)
            for c in config.challengers
        }
        self._hedge_days = 0  # closed days at the last hedge re-estimate
        self.consistency_flags: set[str] = set()  # arms whose inconsistency was recorded (the control's)
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

    def observe(self, as_of: str, growth: Mapping[str, float]) -> None:
        """Full information: one request's net log growth for every agent scored on it, for trading day ``as_of``.
        A new day closes the earlier ones, which the consistency tests then take, once each, in order."""
        previous = self.book.latest
        self.book.add(as_of, growth)
        if self.consistency and previous is not None and as_of > previous:
            for day in self.book.closed_days():
                if day in self._tested_days:
                    continue
                self._tested_days.add(day)
                record = self.book.days[day]
                for arm, test in self.consistency.items():
                    pair = (arm, test.expected.baseline)
                    if record.pair_counts.get(pair):
                        test.update(record.pair_sums[pair] / record.pair_counts[pair])

    @property
    def full_information(self) -> bool:
        """Per-asset feedback has come: the decisions read the paired, day-clustered statistics."""
        return self.book.requests > 0

    def evidence(self, challenger: str) -> dict:
        """The comparison the decisions read: paired by day with per-asset feedback, else unpaired."""
        if self.full_information:
            return self._paired[challenger].summary(self.book)
        return self.comparison(challenger)

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
            "paired": [self._paired[name].summary(self.book) for name in self.config.challengers],
            "full_information": {
                "requests": self.book.requests,
                "closed_days": len(self.book.closed_days()),
                "latest_day": self.book.latest,
            },
            "consistency": {arm: test.summary() for arm, test in sorted(self.consistency.items())},
            "sample_ratio": {
                "p_value": ratio.p_value,
                "chi_square": ratio.chi_square,
                "mismatch": ratio.mismatch,
                "alpha": self.config.srm_alpha,
                "observed": ratio.observed,
                "expected": ratio.expected,
            },
        }

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
            "hedge_days": self._hedge_days,
            "consistency_flags": sorted(self.consistency_flags),
            "paired_p_values": {name: p.running.value for name, p in self._paired.items()},
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
        self._hedge_days = int(state.get("hedge_days", 0))
        self.consistency_flags = set(state.get("consistency_flags", []))
        for name, value in state.get("paired_p_values", {}).items():
            if name in self._paired:
                self._paired[name].running.value = float(value)
