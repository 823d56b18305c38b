"""training.validation: which data validation plays. On a synthetic law it is fresh paths from seeds of its own."""

from __future__ import annotations

import numpy as np

from backtesting.backtest import evaluation_env
from envs.synthetic import default_params, simulate
from training.validation import validation_envs

LAW = {
    "window_days": 0,
    "vol_window_days": 20,
    "train_paths": "auto",
    "validation_paths": 3,
    "data": {"synthetic_years": 6},
}


def test_law_training_validates_on_fresh_paths_as_long_as_the_validation_split():
    envs = validation_envs(LAW)
    split = evaluation_env(LAW, "validation")

    assert len(envs) == 3
    assert all(env.n_steps == split.n_steps for env in envs)
    closes = [env.market.closes for env in envs]
    assert not np.array_equal(closes[0], closes[1])
    # Not the data set's own prices, and not a path of the quality benchmark (integer seeds from 10,000).
    assert not np.isin(closes[0][1:], split.market.closes).any()
    benchmark = [simulate(default_params(), n_days=len(closes[0]), seed=10_000 + i)[0].closes for i in range(20)]
    assert not any(np.isin(closes[0][1:], path).any() for path in benchmark)


def test_validation_paths_repeat_exactly():
    first, again = validation_envs(LAW), validation_envs(LAW)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.market.closes, b.market.closes)


def test_without_law_training_or_paths_validation_is_the_data_split():
    for config in ({**LAW, "train_paths": "split"}, {**LAW, "validation_paths": 0}):
        (env,) = validation_envs(config)
        assert env.split.name == "validation" and env.market.source.startswith("synthetic(")
