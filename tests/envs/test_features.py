"""envs.features: causal feature rows with the documented layout, shared by the env and the server."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from envs.config import DataConfig
from envs.features import (
    RETURN_SCALE,
    compute_features,
    feature_names,
    latest_observation,
    observation_size,
    rolling_std,
    warmup_days,
)
from envs.market import MarketData
from envs.portfolio_env import PortfolioEnv

WINDOW, VOL_WINDOW = 10, 20


@given(t=st.integers(0, 1007), seed=st.integers(0, 2**32 - 1))
def test_feature_row_t_ignores_prices_after_t(tiny, perturb_after, t, seed):
    perturbed = perturb_after(tiny.market, t, seed)

    original = compute_features(tiny.market.closes, WINDOW, VOL_WINDOW)
    changed = compute_features(perturbed.closes, WINDOW, VOL_WINDOW)

    np.testing.assert_array_equal(changed[: t + 1], original[: t + 1])  # NaN warm-up rows compare equal too
    assert not np.array_equal(changed[t + 1 :], original[t + 1 :])  # the perturbation does reach later rows


def test_rows_before_the_warmup_are_nan_and_after_it_finite(tiny):
    features = compute_features(tiny.market.closes, WINDOW, VOL_WINDOW)
    first = warmup_days(WINDOW, VOL_WINDOW)

    assert features.dtype == np.float32
    assert features.shape == (tiny.market.n_days, WINDOW * 4 + 4)
    assert np.isnan(features[:first]).all()
    assert np.isfinite(features[first:]).all()


def test_too_short_history_gives_only_nan_rows(tiny):
    features = compute_features(tiny.market.closes[:VOL_WINDOW], WINDOW, VOL_WINDOW)

    assert np.isnan(features).all()


def test_row_layout_is_lagged_percent_log_returns_then_volatility_then_extras(tiny):
    closes = tiny.market.closes
    extras = np.arange(tiny.market.n_days, dtype=np.float64)[:, None] * np.array([1.0, -1.0])
    t = 300

    row = compute_features(closes, WINDOW, VOL_WINDOW, extras)[t]

    log_returns = np.diff(np.log(closes), axis=0)  # row i is the return of day i + 1
    lagged = row[: WINDOW * 4].reshape(WINDOW, 4)
    for lag in range(WINDOW):
        np.testing.assert_allclose(lagged[lag], RETURN_SCALE * np.log(closes[t - lag] / closes[t - lag - 1]), rtol=1e-5)
    volatility = row[WINDOW * 4 : WINDOW * 4 + 4]
    np.testing.assert_allclose(volatility, RETURN_SCALE * log_returns[t - VOL_WINDOW : t].std(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(row[WINDOW * 4 + 4 :], [t, -t])


def test_a_zero_day_window_observes_volatility_only(tiny):
    closes = tiny.market.closes
    t = 300

    rows = compute_features(closes, 0, VOL_WINDOW)

    log_returns = np.diff(np.log(closes), axis=0)
    assert rows.shape == (tiny.market.n_days, 4)
    assert np.isnan(rows[VOL_WINDOW - 1]).all() and np.isfinite(rows[VOL_WINDOW:]).all()
    np.testing.assert_allclose(rows[t], RETURN_SCALE * log_returns[t - VOL_WINDOW : t].std(axis=0), rtol=1e-5)


def test_feature_names_follow_the_observation_layout():
    names = feature_names(("A", "B"), 3, extras=("rf",))

    assert len(names) == observation_size(2, 3, 1) == 3 * 2 + 2 + 1 + 2
    assert names[:3] == ["logret_pct[A, t-0]", "logret_pct[B, t-0]", "logret_pct[A, t-1]"]
    assert names[6:] == ["vol_pct[A]", "vol_pct[B]", "extra[rf]", "weight[A]", "weight[B]"]


def drive_to(env: PortfolioEnv, steps: int, seed: int) -> np.ndarray:
    """Reset, then trade to random weights for ``steps`` days; returns the observation at the day reached."""
    observation, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        observation, *_ = env.step_weights(rng.dirichlet(np.ones(len(env.assets))))
    return observation


@given(steps=st.integers(0, 147), split=st.sampled_from(["train", "validation", "test"]), seed=st.integers(0, 1000))
def test_latest_observation_equals_the_env_observation_at_t(tiny, small_config, steps, split, seed):
    """The server builds observations from the client's closes with ``latest_observation``; it must see what the env saw."""
    config = small_config.model_copy(update={"split": split, "random_start": False, "episode_days": None})
    env = PortfolioEnv(config, market=tiny.market)

    observation = drive_to(env, steps, seed)

    served = latest_observation(tiny.market.closes[: env.day + 1], env.weights, WINDOW, VOL_WINDOW)
    np.testing.assert_array_equal(served, observation)


def test_latest_observation_with_regimes_equals_the_env_observation(tiny, small_config):
    """What the server computes from a request's closes (PolicyAgent), with regimes on, is what the env observed."""
    from envs.config import RegimeConfig, RegimeParams
    from quant.regimes import from_law

    law = from_law(tiny.params.transition, tiny.params.mu, tiny.params.cov)
    regimes = RegimeConfig(window_days=60, model=RegimeParams.model_validate(law.to_json()))
    config = small_config.model_copy(
        update={
            "split": "test",
            "random_start": False,
            "episode_days": None,
            "observe_regimes": True,
            "regimes": regimes,
        }
    )
    env = PortfolioEnv(config, market=tiny.market)
    for steps in (0, 37):
        observation = drive_to(env, steps, seed=3)
        served = latest_observation(
            tiny.market.closes[: env.day + 1], env.weights, WINDOW, VOL_WINDOW, regimes=law, regime_window_days=60
        )
        np.testing.assert_array_equal(served, observation)


@given(t=st.integers(100, 1007), seed=st.integers(0, 2**32 - 1))
def test_regime_features_at_t_ignore_prices_after_t(tiny, perturb_after, t, seed):
    from quant.regimes import from_law

    law = from_law(tiny.params.transition, tiny.params.mu, tiny.params.cov)
    original = compute_features(tiny.market.closes, WINDOW, VOL_WINDOW, regimes=law, regime_window_days=60)
    changed = compute_features(
        perturb_after(tiny.market, t, seed).closes, WINDOW, VOL_WINDOW, regimes=law, regime_window_days=60
    )
    np.testing.assert_array_equal(changed[: t + 1], original[: t + 1])


def test_latest_observation_with_extras_equals_the_env_observation(tiny, small_config):
    rf = np.linspace(0.01, 0.05, tiny.market.n_days)
    market = MarketData(tiny.market.dates, tiny.market.closes, tiny.market.assets, extras={"rf": rf})
    config = small_config.model_copy(
        update={
            "data": DataConfig(extra_columns=("rf",)),
            "observe_extras": True,
            "random_start": False,
            "episode_days": None,
        }
    )
    env = PortfolioEnv(config, market=market)

    observation = drive_to(env, 37, seed=1)

    served = latest_observation(market.closes[: env.day + 1], env.weights, WINDOW, VOL_WINDOW, rf[: env.day + 1, None])
    assert served.shape == env.observation_space.shape
    np.testing.assert_array_equal(served, observation)
    assert served[WINDOW * 4 + 4] == np.float32(rf[env.day])


def test_latest_observation_needs_a_full_window(tiny):
    needed = warmup_days(WINDOW, VOL_WINDOW) + 1
    with pytest.raises(ValueError, match=f"need at least {needed} closes per asset, got {needed - 1}"):
        latest_observation(tiny.market.closes[: needed - 1], np.full(4, 0.25), WINDOW, VOL_WINDOW)


def test_log_volatility_observes_the_log_of_the_volatility_and_stays_finite_on_flat_prices(tiny):
    closes = tiny.market.closes
    plain = compute_features(closes, WINDOW, VOL_WINDOW)
    logged = compute_features(closes, WINDOW, VOL_WINDOW, log_volatility=True)
    vol = slice(WINDOW * 4, WINDOW * 4 + 4)

    np.testing.assert_allclose(logged[VOL_WINDOW:, vol], np.log(plain[VOL_WINDOW:, vol]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(logged[:, : WINDOW * 4], plain[:, : WINDOW * 4])
    flat = np.column_stack([np.full(60, 100.0), closes[:60, 1]])
    assert np.isfinite(compute_features(flat, 0, VOL_WINDOW, log_volatility=True)[VOL_WINDOW:]).all()
    assert feature_names(("A",), 0, log_volatility=True)[0] == "log_vol_pct[A]"


def test_latest_observation_with_log_volatility_equals_the_env_observation(tiny, small_config):
    config = small_config.model_copy(update={"log_volatility": True, "random_start": False, "episode_days": None})
    env = PortfolioEnv(config, market=tiny.market)

    observation = drive_to(env, 23, seed=2)

    served = latest_observation(tiny.market.closes[: env.day + 1], env.weights, WINDOW, VOL_WINDOW, log_volatility=True)
    np.testing.assert_array_equal(served, observation)


@pytest.mark.parametrize(("days", "window"), [(300, 20), (20, 20), (21, 20), (50, 7), (30, 1)])
def test_rolling_std_is_numpys_std_over_each_window_for_every_path(days, window):
    values = np.random.default_rng(days).normal(0.05, 1.3, size=(3, days, 4)) + np.array([0.0, 5.0, -3.0, 100.0])
    expected = np.stack([values[:, i : i + window].std(axis=1) for i in range(days - window + 1)], axis=1)
    got = rolling_std(values, window)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(rolling_std(values[1], window), got[1], rtol=1e-12, atol=1e-12)
