"""regime_growth's trading rate, chosen on validation: replaying the filtered targets at each rate gives exactly what
a backtest of that rate gives, and the chosen rate is the best of them."""

from __future__ import annotations

import numpy as np
import pytest

from backtesting.backtest import evaluation_env, path_env, run_backtest, run_batched_strategy
from backtesting.tuning import RATES, tune_regime_trade_rate, with_tuned_regime_rate
from envs.regimes import fitted_regime_model
from envs.synthetic import law_path
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


def test_on_law_paths_each_rate_scores_its_backtest_averaged_over_the_paths(tiny, small_config, fitted):
    days = evaluation_env(small_config, "validation", market=tiny.market).n_steps
    window = small_config.regimes.window_days
    dates = tiny.market.dates[: window + days + 1]
    paths = [law_path(tiny.params, dates, np.random.default_rng(i), f"path {i}") for i in range(3)]
    rate, scores = tune_regime_trade_rate(small_config, tiny.market, fitted, paths=paths)
    assert scores[rate] == max(scores.values())
    # a warm-up of the regime window: the backtests start where the replay does, from equal weights
    envs = [path_env(small_config.model_copy(update={"window_days": window}), p) for p in paths]
    assert {env.n_steps for env in envs} == {days}
    for r in (1.0, 0.1):
        strategy = make_baseline(
            "regime_growth", tiny.market.assets, BaselinesConfig(regime_trade_rate=r), fitted, window
        )
        results = run_batched_strategy(strategy, envs)
        assert np.mean([res.log_growth.mean() for res in results]) == pytest.approx(scores[r], rel=1e-10, abs=1e-14)
    assert scores != tune_regime_trade_rate(small_config, tiny.market, fitted)[1]  # not the split's
