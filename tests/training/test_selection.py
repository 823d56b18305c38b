"""training.validation's selection rules: which validated module a run keeps and exports."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.validation import standard_error, with_run_dir


def kept(selection: str, validations: list[tuple[float, float]]) -> list[bool]:
    callback = with_run_dir("/tmp/unused", selection=selection)()
    callback._best, callback._best_se = -math.inf, 0.0
    return [callback._keeps({"mean_daily_log_growth": g, "mean_daily_log_growth_se": se}) for g, se in validations]


# (score, standard error) per validation: an early lucky best, later modules inside or outside its band, a new best.
SCORES = [(1.0, 0.5), (0.7, 0.1), (0.4, 0.1), (1.2, 0.1), (1.15, 0.3), (1.0, 0.1)]


def test_best_keeps_only_improvements():
    assert kept("best", SCORES) == [True, False, False, True, False, False]


def test_within_one_se_keeps_the_newest_module_within_one_standard_error_of_the_best():
    # 0.7 is within 0.5 of 1.0; 0.4 is not; 1.2 is a new best whose band is 0.1 wide: 1.15 is in it, 1.0 is not.
    assert kept("within_one_se", SCORES) == [True, True, False, True, True, False]


def test_standard_error_is_across_paths_or_across_days_of_one_path():
    assert standard_error([1.0, 2.0, 3.0], np.zeros(5)) == pytest.approx(1.0 / math.sqrt(3))
    daily = np.array([0.01, -0.01, 0.02, 0.0])
    assert standard_error([0.005], daily) == pytest.approx(daily.std(ddof=1) / 2)
    assert standard_error([0.005], np.array([0.01])) == 0.0
