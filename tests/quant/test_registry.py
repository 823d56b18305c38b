"""quant.registry: the one list of classical strategies, their parameters and the closes each decision reads."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from quant.registry import BASELINES, ROUTABLE, BaselinesConfig, closes_needed, make_baseline
from quant.strategies import History


def test_the_routable_baselines_are_those_decided_from_closes_alone():
    assert ROUTABLE == (
        "equal_weight",
        "min_variance",
        "mean_variance",
        "risk_parity",
        "growth_optimal",
        "regime_growth",
    )
    assert set(BASELINES) - set(ROUTABLE) == {"buy_and_hold", "fixed_mix"}


def test_closes_needed_is_the_lookback_or_the_regime_window_plus_one():
    config = BaselinesConfig(lookback_days=60)
    assert closes_needed("risk_parity", config) == 61 and closes_needed("growth_optimal") == 253
    assert closes_needed("regime_growth", config, regime_window_days=40) == 41
    assert closes_needed("equal_weight", config) == 1


def test_an_estimated_baseline_given_its_closes_needed_decides_as_with_the_whole_history(tiny):
    config = BaselinesConfig(lookback_days=60)
    closes = np.asarray(tiny.market.closes[:400])
    held = np.full(4, 0.25)
    for name in ("min_variance", "risk_parity", "growth_optimal", "mean_variance"):
        whole = make_baseline(name, tiny.market.assets, config).weights(History(closes, held, np.zeros(0)))
        last = closes[-closes_needed(name, config) :]
        served = make_baseline(name, tiny.market.assets, config).weights(History(last, held, np.zeros(0)))
        np.testing.assert_allclose(served, whole, atol=1e-12, err_msg=name)


def test_unknown_names_and_missing_regime_models_are_config_errors_naming_them(tiny):
    with pytest.raises(ConfigError, match="unknown baseline 'momentum'"):
        make_baseline("momentum", tiny.market.assets)
    with pytest.raises(ConfigError, match="unknown baseline 'momentum'"):
        closes_needed("momentum")
    with pytest.raises(ConfigError, match="regime_growth filters with a fitted regime model"):
        make_baseline("regime_growth", tiny.market.assets)
