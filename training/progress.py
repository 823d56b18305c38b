"""Progress on the console: one line per training iteration, for single runs and for every Tune trial of a sweep.

    ppo 3f2a1_00001 (2/4) iter  12  steps   96,000/300,000  val +0.000312/day (best +0.000401)  3,420 steps/s  ~1m05s left

``val`` is the iteration's validation mean daily log growth (net of costs), ``best`` the best so far of that run,
which is the module it keeps. Tune's own status tables are off (``verbose=0``); this callback replaces them.

Every iteration's line goes to the log file (``sweep.log``, ``train.log``); the console gets a run's first and last
iteration and at most one line per ``CONSOLE_EVERY_S`` seconds in between, so a 10-minute sweep stays readable.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from ray.tune import Callback

log = logging.getLogger(__name__)

STEPS = "num_env_steps_sampled_lifetime"
CONSOLE_EVERY_S = 10.0


class Throttle:
    """Which progress lines reach the console: ``level(key, final)`` is INFO (console and file) for a key's first
    line, its final one and one every ``every_s`` seconds, DEBUG (file only) otherwise."""

    def __init__(self, every_s: float = CONSOLE_EVERY_S) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def level(self, key: str, final: bool = False) -> int:
        now = time.monotonic()
        last = self._last.get(key)
        if final or last is None or now - last >= self.every_s:
            self._last[key] = now
            return logging.INFO
        return logging.DEBUG


def duration(seconds: float) -> str:
    """``65`` -> ``1m05s``; ``3700`` -> ``1h01m``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def iteration_line(
    label: str, result: dict[str, Any], total_steps: int | None, budget_left_s: float | None = None
) -> str:
    """The progress line of one iteration's ``result`` (RLlib's, with our ``validation`` entries); ``total_steps``
    ``None`` (a time budget alone) shows the steps so far and the budget left."""
    steps = int(result.get(STEPS, 0))
    elapsed = float(result.get("time_total_s") or 0.0)
    rate = steps / elapsed if elapsed > 0 else float("nan")
    lefts = [budget_left_s] if budget_left_s is not None else []
    if total_steps is not None:
        lefts.append((total_steps - steps) / rate if rate > 0 and steps < total_steps else 0.0)
    val = result.get("validation") or {}
    g, best = val.get("mean_daily_log_growth", float("nan")), val.get("best_mean_daily_log_growth", float("nan"))
    of = f"/{total_steps:,}" if total_steps is not None else ""
    width = len(f"{total_steps:,}") if total_steps is not None else 9
    return (
        f"{label} iter {int(result.get('training_iteration', 0)):>3}  steps {steps:>{width},}{of}  "
        f"val {g:+.6f}/day (best {best:+.6f})  {rate:,.0f} steps/s  ~{duration(min(lefts))} left"
    )


class Budget:
    """When training stops: after ``timesteps`` env steps, or before an iteration that would end past
    ``seconds`` of wall-clock time (judged by the longest iteration so far), whichever comes first."""

    def __init__(self, timesteps: int | None, seconds: float | None) -> None:
        self.timesteps, self.seconds = timesteps, seconds
        self._started = time.perf_counter()
        self._iteration_started = self._started
        self._longest = 0.0

    def iteration_started(self) -> None:
        self._iteration_started = time.perf_counter()

    def iteration_ended(self) -> None:
        self._longest = max(self._longest, time.perf_counter() - self._iteration_started)

    def elapsed_s(self) -> float:
        return time.perf_counter() - self._started

    def left_s(self) -> float | None:
        return None if self.seconds is None else max(self.seconds - self.elapsed_s(), 0.0)

    def spent(self, steps: int) -> bool:
        if self.timesteps is not None and steps >= self.timesteps:
            return True
        return self.seconds is not None and self.elapsed_s() + self._longest > self.seconds


class ProgressCallback(Callback):
    """A Tune callback that logs ``iteration_line`` for every trial result, and a line when a trial ends."""

    def __init__(self, algo: str, total_steps: int, n_trials: int) -> None:
        self.algo, self.total_steps, self.n_trials = algo, total_steps, n_trials
        self._best: dict[str, float] = {}
        self._throttle = Throttle()

    def _label(self, trial) -> str:
        # Tune numbers trials <experiment>_00000, _00001, ... in creation order, across resumes too.
        suffix = trial.trial_id.rsplit("_", 1)[-1]
        number = int(suffix) + 1 if suffix.isdigit() else "?"
        return f"{self.algo} {trial.trial_id} ({number}/{self.n_trials})"

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info: Any) -> None:
        best = (result.get("validation") or {}).get("best_mean_daily_log_growth")
        if best is not None:
            self._best[trial.trial_id] = best
        final = int(result.get(STEPS, 0)) >= self.total_steps
        log.log(
            self._throttle.level(trial.trial_id, final), iteration_line(self._label(trial), result, self.total_steps)
        )

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        steps = int((trial.last_result or {}).get(STEPS, 0))
        how = "finished" if steps >= self.total_steps else f"stopped early by ASHA at {steps:,} steps"
        best_id = max(self._best, key=self._best.get) if self._best else None
        leader = f"; best trial so far {best_id} ({self._best[best_id]:+.6f}/day)" if best_id else ""
        mine = self._best.get(trial.trial_id)
        log.info(
            f"{self._label(trial)} {how}: best val {mine:+.6f}/day{leader}"
            if mine is not None
            else f"{self._label(trial)} {how}"
        )

    def on_trial_recover(self, iteration: int, trials: list, trial, **info: Any) -> None:
        steps = int((trial.last_result or {}).get(STEPS, 0))
        log.warning(
            f"{self._label(trial)} lost its worker at {steps:,} steps (a node lost, or a crash); retrying from its "
            f"last checkpoint (failure {trial.num_failures} of {trial.max_failures} allowed)"
        )

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        log.warning(f"{self._label(trial)} failed; the error is in {trial.error_file or trial.path}")
