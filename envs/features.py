"""Causal features: the one function that turns closes into observations, for the env, baselines and the server.

Row ``t`` of every array here uses closes ``0 .. t`` only. Observation layout (``float32``), for ``K`` assets,
window ``W`` and ``E`` observed extras:

| slice                  | content                                                        | unit            |
|------------------------|----------------------------------------------------------------|-----------------|
| ``[0, W*K)``           | log returns of days ``t, t-1, .., t-W+1`` (lag-major, assets inner) | percent (x100) |
| ``[W*K, W*K+K)``       | standard deviation of the last ``vol_window_days`` log returns | percent per day (its natural log with ``log_volatility``) |
| ``[.., ..+E)``         | extra columns' values at day ``t``                             | as in the CSV   |
| ``[.., ..+R)``         | regime probabilities filtered from the last ``regime_window_days`` returns (``envs.regimes``) | probability |
| ``[.., ..+K)``         | a residual policy's base weights at day ``t`` (``envs.bases``), when it has one | fraction |
| last ``K``             | current portfolio weights (after the day's drift)              | fraction        |
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import uniform_filter1d

from quant.regimes import RegimeModel, daily_filters, latest_filter

RETURN_SCALE = 100.0  # log returns and volatilities are observed in percent
VOL_FLOOR = 1e-4  # percent per day: the log of a flat price's zero volatility stays finite


def warmup_days(window_days: int, vol_window_days: int, regime_window_days: int = 0) -> int:
    """Days of returns needed before the first valid feature row; the first valid row index is this number."""
    return max(window_days, vol_window_days, regime_window_days)


def compute_features(
    closes: np.ndarray,
    window_days: int,
    vol_window_days: int,
    extras: np.ndarray | None = None,
    log_volatility: bool = False,
    regimes: RegimeModel | None = None,
    regime_window_days: int = 0,
) -> np.ndarray:
    """Feature rows for every day.

    :param closes: ``(T, K)`` positive closes, or ``(..., T, K)``: one path per leading index.
    :param extras: ``(T, E)`` extra values observed as they are, or ``None``.
    :param log_volatility: observe ``log(volatility)``: regimes differ by ratios of volatilities (a bond's 0.3% against
        0.5% a day is as telling as a stock's 0.9% against 1.5%), which the log makes equal differences.
    :param regimes: observe this model's regime probabilities, filtered over the last ``regime_window_days`` returns
        (``envs.regimes.windowed_filter``): row ``t`` uses the returns of days ``t - regime_window_days + 1 .. t``.
    :returns: ``(..., T, W*K + K + E + R)`` ``float32``; rows before ``warmup_days(...)`` are NaN.
    """
    closes = np.asarray(closes, dtype=np.float64)
    *paths, n_days, n_assets = closes.shape  # any leading dimensions are paths (a vector env's batched reset)
    n_extras = 0 if extras is None else extras.shape[-1]
    n_regimes = 0 if regimes is None else regimes.n_regimes
    width = window_days * n_assets + n_assets + n_extras + n_regimes
    features = np.full((*paths, n_days, width), np.nan, dtype=np.float32)
    first = warmup_days(window_days, vol_window_days, regime_window_days if regimes is not None else 0)
    if n_days <= first:
        return features
    raw_returns = np.diff(np.log(closes), axis=-2)  # row i is the return of day i+1
    log_returns = raw_returns * RETURN_SCALE
    # lags[..., i, k, j] = log_returns[..., i + j, k]; day t's window ends at return row t-1.
    if window_days:
        lags = sliding_window_view(log_returns, window_days, axis=-2)[..., first - window_days :, :, :]
        features[..., first:, : window_days * n_assets] = (
            lags[..., ::-1].swapaxes(-1, -2).reshape(*paths, n_days - first, -1)
        )
    vol = rolling_std(log_returns[..., first - vol_window_days :, :], vol_window_days)  # only the rows observed
    if log_volatility:
        vol = np.log(np.maximum(vol, VOL_FLOOR))
    features[..., first:, window_days * n_assets : window_days * n_assets + n_assets] = vol
    if n_extras:
        features[..., window_days * n_assets + n_assets : window_days * n_assets + n_assets + n_extras] = extras
    if regimes is not None:
        features[..., first:, width - n_regimes :] = daily_filters(regimes, raw_returns, first, regime_window_days)
    return features


def rolling_std(values: np.ndarray, window: int) -> np.ndarray:
    """``(..., T - window + 1, K)``: row ``i`` is the population standard deviation of rows ``i .. i + window - 1``
    of ``values`` (``(..., T, K)``), as ``np.std`` gives it, from moving averages of the values and their squares
    (scipy's ``uniform_filter1d``, a running sum in C): O(T) rather than O(T * window), which matters when a vector
    env computes hundreds of paths at each reset. Each column is centred on its mean first, so the averages stay
    small and their difference loses no precision that shows in a float32 observation."""
    centred = values - values.mean(axis=-2, keepdims=True)
    rows, first = values.shape[-2] - window + 1, window // 2  # the filter's output i averages i - window // 2 ..
    mean = uniform_filter1d(centred, window, axis=-2)[..., first : first + rows, :]
    centred *= centred
    variance = uniform_filter1d(centred, window, axis=-2)[..., first : first + rows, :]
    variance -= mean * mean
    np.maximum(variance, 0.0, out=variance)
    return np.sqrt(variance, out=variance)


def observation_size(n_assets: int, window_days: int, n_extras: int = 0, n_regimes: int = 0, base: bool = False) -> int:
    return window_days * n_assets + n_assets + n_extras + n_regimes + n_assets * int(base) + n_assets


def latest_observation(
    closes: np.ndarray,
    weights: np.ndarray,
    window_days: int,
    vol_window_days: int,
    extras: np.ndarray | None = None,
    log_volatility: bool = False,
    regimes: RegimeModel | None = None,
    regime_window_days: int = 0,
    base: np.ndarray | None = None,
    filtered: np.ndarray | None = None,
) -> np.ndarray:
    """Observation at the last day of ``closes`` (``(T, K)``, oldest first), as the env would build it; ``base``: a
    residual policy's base weights that day (``envs.bases.ResidualBase.latest``); ``filtered``: ``regimes``' filter
    that day (``quant.regimes.latest_filter``) when the caller has it.

    Needs ``T >= warmup_days(...) + 1`` closes. Used by the HTTP server so it cannot drift from the env.
    """
    needed = warmup_days(window_days, vol_window_days, regime_window_days if regimes is not None else 0) + 1
    if closes.shape[0] < needed:
        raise ValueError(f"need at least {needed} closes per asset, got {closes.shape[0]}")
    tail = closes[-needed:]
    extra_tail = None if extras is None else extras[-needed:]
    # The regime probabilities are the row's last columns: the last day's filter alone, not every day's of the tail.
    row = compute_features(tail, window_days, vol_window_days, extra_tail, log_volatility)[-1]
    parts = [row]
    if regimes is not None:
        if filtered is None:
            filtered = latest_filter(regimes, tail, regime_window_days)
        parts.append(np.asarray(filtered, dtype=np.float32))
    parts += [] if base is None else [np.asarray(base, dtype=np.float32)]
    return np.concatenate([*parts, np.asarray(weights, dtype=np.float32)])


def feature_names(
    assets: tuple[str, ...],
    window_days: int,
    extras: tuple[str, ...] = (),
    log_volatility: bool = False,
    n_regimes: int = 0,
    base: str = "none",
) -> list[str]:
    """Names of the observation entries, in layout order (``base``: the residual base's name, or ``none``)."""
    names = [f"logret_pct[{asset}, t-{lag}]" for lag in range(window_days) for asset in assets]
    names += [f"{'log_vol_pct' if log_volatility else 'vol_pct'}[{asset}]" for asset in assets]
    names += [f"extra[{name}]" for name in extras]
    names += [f"regime_prob[{k}]" for k in range(n_regimes)]
    names += [] if base == "none" else [f"base[{base}, {asset}]" for asset in assets]
    names += [f"weight[{asset}]" for asset in assets]
    return names
