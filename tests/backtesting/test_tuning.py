"""regime_growth's trading rate, chosen on validation: replaying the filtered targets at each rate gives exactly what
a backtest of that rate gives, and the chosen rate is the best of them."""

from __future__ import annotations

import numpy as np
import pytest

from backtesting.backtest import evaluation_env, run_backtest
from backtesting.tuning import RATES, tune_regime_trade_rate, with_tuned_regime_rate
from envs.regimes import fitted_regime_model
from quant.registry import BaselinesConfig, make_baseline


@pytest.fixture(scope="module")
def fitted(tiny, small_config):
    env = evaluation_env(small_config, "validation", market=tiny.market)
    return fitted_regime_model(small_config, tiny.market, env.splits["train"])


def test_each_rates_replay_is_its_backtest_and_the_best_is_chosen(tiny, small_config, fitted):
    rate, scores = tune_regime_trade_rate(small_config, tiny.market, fitted)
    assert set(scores) == set(RATES) and scores[rate] == max(scores.values())
    turnover = {}
    for r in RATES:
        strategy = make_baseline(
            "regime_growth",
            tiny.market.assets,
            BaselinesConfig(regime_trade_rate=r),
            fitted,
            small_config.regimes.window_days,
        )
        result = run_backtest(strategy, evaluation_env(small_config, "validation", market=tiny.market))
        assert result.log_growth.mean() == pytest.approx(scores[r], rel=1e-10, abs=1e-14)
        turnover[r] = result.turnover.sum()
    assert turnover[0.02] < turnover[0.25] < turnover[1.0]  # a slower rate trades less


def test_a_configured_rate_is_kept_and_none_is_filled(tiny, small_config, fitted):
    fixed = BaselinesConfig(regime_trade_rate=0.5)
    assert with_tuned_regime_rate(fixed, small_config, tiny.market, fitted) is fixed
    tuned = with_tuned_regime_rate(BaselinesConfig(), small_config, tiny.market, fitted)
    assert tuned.regime_trade_rate == tune_regime_trade_rate(small_config, tiny.market, fitted)[0]
    assert with_tuned_regime_rate(BaselinesConfig(), small_config, tiny.market, None).regime_trade_rate is None
    with pytest.raises(ValueError, match="regime_trade_rate"):
        BaselinesConfig(regime_trade_rate=0)
    assert np.isfinite(list(tune_regime_trade_rate(small_config, tiny.market, fitted)[1].values())).all()
