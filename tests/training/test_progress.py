"""training.progress: the one-line-per-iteration console of training runs and sweeps."""

from __future__ import annotations

import logging

from training.progress import Throttle, duration, iteration_line


def result(steps: int, seconds: float, g: float, best: float, iteration: int = 3) -> dict:
    return {
        "num_env_steps_sampled_lifetime": steps,
        "time_total_s": seconds,
        "training_iteration": iteration,
        "validation": {"mean_daily_log_growth": g, "best_mean_daily_log_growth": best},
    }


def test_a_line_shows_steps_validation_best_rate_and_time_left():
    line = iteration_line("ppo 77b4c_00000 (1/2)", result(96_000, 32.0, 0.000312, 0.000401), 300_000)
    assert line == (
        "ppo 77b4c_00000 (1/2) iter   3  steps  96,000/300,000  val +0.000312/day (best +0.000401)  "
        "3,000 steps/s  ~1m08s left"
    )


def test_the_best_shown_is_the_best_so_far_not_the_latest():
    line = iteration_line("sac", result(2_000, 4.0, -0.0002, 0.0005), 2_000)
    assert "val -0.000200/day (best +0.000500)" in line and "~0s left" in line


def test_a_line_before_any_validation_says_nan_rather_than_failing():
    line = iteration_line("dqn", {"num_env_steps_sampled_lifetime": 0, "training_iteration": 1}, 1_000)
    assert "val +nan/day" in line and "nan steps/s" in line


def test_durations_read_as_people_say_them():
    assert [duration(s) for s in (5, 65, 3700, float("nan"))] == ["5s", "1m05s", "1h01m", "?"]


def test_the_console_gets_first_last_and_one_line_per_interval_and_the_file_every_line(monkeypatch):
    clock = iter([0.0, 1.0, 2.0, 11.0, 12.0, 13.0])
    monkeypatch.setattr("training.progress.time.monotonic", lambda: next(clock))
    throttle = Throttle(every_s=10.0)
    levels = [throttle.level("t", final=i == 5) for i in range(6)]
    assert levels == [logging.INFO, logging.DEBUG, logging.DEBUG, logging.INFO, logging.DEBUG, logging.INFO]


def test_a_budget_stops_before_an_iteration_that_would_end_past_it(monkeypatch):
    from training import progress

    clock = iter([0.0, 0.0, 0.0, 4.0, 4.0, 4.0, 9.0, 9.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    budget = progress.Budget(timesteps=None, seconds=10.0)  # starts at 0
    assert not budget.spent(0)  # 0 + longest 0 < 10
    budget.iteration_started()  # 0
    budget.iteration_ended()  # 4: the longest iteration took 4 s
    assert not budget.spent(100)  # 4 + 4 < 10
    budget.iteration_started()  # 4
    budget.iteration_ended()  # 9: 5 s
    assert budget.spent(200)  # 9 + 5 > 10: the next iteration would end past the budget


def test_a_step_limit_stops_without_a_budget():
    from training.progress import Budget

    budget = Budget(timesteps=1000, seconds=None)
    assert not budget.spent(999) and budget.spent(1000) and budget.left_s() is None
