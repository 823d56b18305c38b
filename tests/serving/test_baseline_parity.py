"""One baseline registry: for the same closes, the server's decision (``serving.agents.BaselineAgent``, which sees
only the closes a request posts) equals the backtest's (``backtesting.backtest.run_backtest``, which sees the whole
history) for every routable baseline, on every decision day of a backtest. No Ray: the deployment's own agent."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtesting.backtest import evaluation_env, run_backtest
from envs.config import RegimeParams
from envs.regimes import fitted_regime_model
from quant.registry import ROUTABLE, BaselinesConfig, make_baseline
from serving.agents import BaselineAgent

LOOKBACK = 60  # short, so that decision days with a full lookback come early in the tiny market's test split
WINDOW = 40


class Recorded:
    """A strategy that decides as ``inner`` and remembers each decision with the history it was made from."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.rebalance_every_days = inner, inner.name, inner.rebalance_every_days
        self.decisions: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (closes, held, weights)

    def weights(self, history):
        decided = self.inner.weights(history)
        self.decisions.append((np.array(history.closes), np.array(history.held), np.array(decided)))
        return decided


@pytest.fixture(scope="module")
def played(tiny, small_config):
    """Every routable baseline backtested on the tiny market's test split, with its decisions."""
    config = small_config.model_copy(
        update={"regimes": small_config.regimes.model_copy(update={"window_days": WINDOW})}
    )
    env = evaluation_env(config, "test", market=tiny.market)
    regimes = fitted_regime_model(config, env.market, env.splits["train"])
    baselines = BaselinesConfig(lookback_days=LOOKBACK, rebalance_every_days=5)
    out = {}
    for name in ROUTABLE:
        recorded = Recorded(make_baseline(name, env.assets, baselines, regimes, WINDOW))
        run_backtest(recorded, env)
        out[name] = recorded
    return env, regimes, baselines, out


@pytest.mark.parametrize("name", ROUTABLE)
@settings(max_examples=8)
@given(pick=st.floats(0, 1, exclude_max=True))
def test_the_server_decides_as_the_backtest_for_every_routable_baseline(played, name, pick):
    env, regimes, baselines, recorded = played
    closes, held, decided = recorded[name].decisions[int(pick * len(recorded[name].decisions))]
    server = BaselineAgent(
        name,
        tuple(env.assets),
        agents_need=1,
        regimes=RegimeParams.model_validate(regimes.to_json()),
        regime_window_days=WINDOW,
        config=baselines,
    )
    estimated = {"min_variance", "mean_variance", "risk_parity", "growth_optimal"}
    needed = LOOKBACK + 1 if name in estimated else WINDOW + 1 if name == "regime_growth" else 1
    assert server.info.closes_needed == needed
    posted = closes[-needed:]  # what a client posts: the closes the server asks for, no more
    served = server.weights_batch([posted], [held])[0]
    np.testing.assert_allclose(served, decided, rtol=0, atol=1e-9, err_msg=name)
