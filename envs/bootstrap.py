"""Training paths resampled from data: a stationary block bootstrap of daily return vectors (Politis and Romano
1994), written here rather than with ``arch.bootstrap.StationaryBootstrap`` because a vector env draws one path per
generator at every reset and must draw exactly what ``PortfolioEnv.reset`` draws with the same generator."""

from __future__ import annotations

import numpy as np


def bootstrap_closes(returns: np.ndarray, n_days: int, block_days: float, rng: np.random.Generator) -> np.ndarray:
    """``(n_days + 1, K)`` closes from 100, compounding ``n_days`` daily log-return vectors drawn from ``returns``
    (``(L, K)``) in blocks of geometric length with mean ``block_days``, wrapping around the end."""
    length = len(returns)
    start = rng.integers(length)
    restart = rng.random(n_days) < 1.0 / block_days
    fresh = rng.integers(length, size=n_days)
    # Day d continues the block begun on the last restart day r <= d (day 0 begins one at `start`).
    restart[0] = True
    fresh[0] = start
    days = np.arange(n_days)
    begun = np.maximum.accumulate(np.where(restart, days, 0))
    index = (fresh[begun] + days - begun) % length
    return 100.0 * np.exp(np.vstack([np.zeros(returns.shape[1]), np.cumsum(returns[index], axis=0)]))
