"""Synthetic regime-switching market whose true law, and so whose optimal portfolio, is known.

Model: a Markov chain over ``R`` regimes with transition matrix ``P`` (``(R, R)``, rows sum to 1). The regime in
force at the close of day ``t`` draws the next day's log returns ``r[t+1] ~ N(mu[s_t], cov[s_t])`` (``(K,)`` and
``(K, K)``, daily units), so an investor who knew ``s_t`` at the close could act on it. Prices are
``close[t+1] = close[t] * exp(r[t+1])``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.constants import TRADING_DAYS_PER_YEAR
from core.errors import ConfigError
from envs.market import MarketData

# Archetypes, annual log drift and volatility per regime, chosen so that the best portfolio changes with the regime
# and the best constant mix is neither equal weight nor a single asset.
_ARCHETYPES = ("STOCK", "BOND", "GOLD", "CRYPTO")
_REGIMES = ("calm", "crisis", "inflation")
_ANNUAL_DRIFT = np.array(
    [  # STOCK  BOND   GOLD  CRYPTO
        [0.16, 0.01, -0.02, 0.40],  # calm: equities and crypto rally
        [-0.30, 0.08, 0.10, -1.20],  # crisis: flight to bonds and gold
        [0.02, -0.08, 0.14, -0.10],  # inflation: gold leads, bonds bleed
    ]
)
_ANNUAL_VOL = np.array(
    [
        [0.14, 0.05, 0.14, 0.80],
        [0.32, 0.07, 0.18, 1.10],
        [0.18, 0.08, 0.16, 0.85],
    ]
)
_CORRELATION = np.array(
    [
        [[1.0, -0.2, 0.0, 0.3], [-0.2, 1.0, 0.2, 0.0], [0.0, 0.2, 1.0, 0.1], [0.3, 0.0, 0.1, 1.0]],
        [[1.0, -0.4, -0.2, 0.6], [-0.4, 1.0, 0.3, -0.2], [-0.2, 0.3, 1.0, 0.0], [0.6, -0.2, 0.0, 1.0]],
        [[1.0, 0.4, 0.1, 0.3], [0.4, 1.0, 0.0, 0.1], [0.1, 0.0, 1.0, 0.2], [0.3, 0.1, 0.2, 1.0]],
    ]
)
# Expected regime durations in trading days (self-transition probability 1 - 1/duration).
_DURATION_DAYS = np.array([250.0, 60.0, 120.0])
MAX_ASSETS = 200  # a factor market beyond the four archetypes (``factor_moments``)


@dataclass(frozen=True)
class MarketParams:
    """True law of a synthetic market.

    :param assets: ``K`` names.
    :param regimes: ``R`` names.
    :param transition: ``(R, R)`` Markov transition matrix.
    :param mu: ``(R, K)`` mean daily log return per regime.
    :param cov: ``(R, K, K)`` daily log-return covariance per regime.
    """

    assets: tuple[str, ...]
    regimes: tuple[str, ...]
    transition: np.ndarray
    mu: np.ndarray
    cov: np.ndarray

    def stationary(self) -> np.ndarray:
        """``(R,)`` stationary distribution ``pi`` with ``pi P = pi``."""
        values, vectors = np.linalg.eig(self.transition.T)
        pi = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
        return pi / pi.sum()

    def to_json(self) -> dict:
        return {
            "assets": list(self.assets),
            "regimes": list(self.regimes),
            "transition": self.transition.tolist(),
            "stationary": self.stationary().tolist(),
            "mu_daily": self.mu.tolist(),
            "cov_daily": self.cov.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict) -> MarketParams:
        return cls(
            assets=tuple(data["assets"]),
            regimes=tuple(data["regimes"]),
            transition=np.asarray(data["transition"], dtype=np.float64),
            mu=np.asarray(data["mu_daily"], dtype=np.float64),
            cov=np.asarray(data["cov_daily"], dtype=np.float64),
        )


def default_params(n_assets: int = 4, n_regimes: int = 3, seed: int = 0) -> MarketParams:
    """The built-in market: 4 assets (stock/bond/gold/crypto-like) in 3 regimes (calm, crisis, inflation).

    Other sizes: ``n_regimes`` 1..3 takes the first regimes; ``n_assets`` up to 4 takes the first archetypes; more
    (up to ``MAX_ASSETS``) is a factor market whose factors are the archetypes (``factor_moments``), drawn
    deterministically from ``seed``.
    """
    if not 1 <= n_regimes <= len(_REGIMES):
        raise ConfigError(f"regimes: {n_regimes} is not supported (1 to {len(_REGIMES)})")
    if not 1 <= n_assets <= MAX_ASSETS:
        raise ConfigError(f"assets: {n_assets} is not supported (1 to {MAX_ASSETS})")
    if n_assets <= len(_ARCHETYPES):
        mu, cov = _archetype_moments(n_assets, n_regimes)
    else:
        mu, cov = factor_moments(n_assets, n_regimes, seed)
    names = tuple(
        _ARCHETYPES[i % len(_ARCHETYPES)] + (str(i // len(_ARCHETYPES) + 1) if i >= len(_ARCHETYPES) else "")
        for i in range(n_assets)
    )
    stay = 1.0 - 1.0 / _DURATION_DAYS[:n_regimes]
    if n_regimes == 1:
        transition = np.ones((1, 1))
    else:
        transition = np.tile(((1.0 - stay) / (n_regimes - 1))[:, None], (1, n_regimes))
        np.fill_diagonal(transition, stay)
    return MarketParams(assets=names, regimes=_REGIMES[:n_regimes], transition=transition, mu=mu, cov=cov)


def _archetype_moments(n_assets: int, n_regimes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(R, K)`` daily means and ``(R, K, K)`` covariances of the first ``n_assets`` archetypes themselves."""
    mu = _ANNUAL_DRIFT[:n_regimes, :n_assets] / TRADING_DAYS_PER_YEAR
    daily_vol = _ANNUAL_VOL[:n_regimes, :n_assets] / np.sqrt(TRADING_DAYS_PER_YEAR)
    cov = _CORRELATION[:n_regimes, :n_assets, :n_assets] * (daily_vol[:, :, None] * daily_vol[:, None, :])
    return mu, cov


def factor_moments(n_assets: int, n_regimes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(R, K)`` daily means and ``(R, K, K)`` covariances of a factor market over the archetypes.

    The factors are the four archetypes, whose law in each regime is the built-in market's (means ``m_r``, covariance
    ``F_r``). Asset ``i`` belongs to sector ``i mod 4`` and loads ``b_i (1 + t_ir)`` on its sector's factor
    (``b_i ~ U(0.7, 1.3)``, a regime tilt ``t_ir ~ U(-0.2, 0.2)``); a non-equity asset also loads ``c_i ~
    U(-0.1, 0.2)`` on the equity factor (the market). Its own noise has volatility ``k_i`` times its sector's in the
    regime (``k_i ~ U(0.4, 0.8)``) and its drift an alpha of ``N(0, 2%)`` a year. With ``B_r`` the ``(K, 4)``
    loadings and ``D_r`` the own variances:

        mu_r = B_r m_r + alpha_r,    cov_r = B_r F_r B_r' + diag(D_r)

    The own variances bound every eigenvalue of ``cov_r`` from below, so the covariances stay well conditioned
    however many assets share a factor, and the growth-optimal portfolio moves with the regime as the factors'
    means do.
    """
    rng = np.random.default_rng(seed)
    n_factors = len(_ARCHETYPES)
    sector = np.arange(n_assets) % n_factors
    rows = np.arange(n_assets)
    beta = rng.uniform(0.7, 1.3, size=n_assets)
    tilt = rng.uniform(-0.2, 0.2, size=(n_regimes, n_assets))
    market = np.where(sector == 0, 0.0, rng.uniform(-0.1, 0.2, size=n_assets))
    own_scale = rng.uniform(0.4, 0.8, size=n_assets)
    alpha = rng.normal(0.0, 0.02, size=(n_regimes, n_assets)) / TRADING_DAYS_PER_YEAR
    factor_mu, factor_cov = _archetype_moments(n_factors, n_regimes)
    loadings = np.zeros((n_regimes, n_assets, n_factors))
    loadings[:, rows, 0] = market
    loadings[:, rows, sector] += beta * (1.0 + tilt)
    own_vol = own_scale * _ANNUAL_VOL[:n_regimes][:, sector] / np.sqrt(TRADING_DAYS_PER_YEAR)
    mu = np.einsum("rkf,rf->rk", loadings, factor_mu) + alpha
    cov = loadings @ factor_cov @ loadings.transpose(0, 2, 1)
    cov = (cov + cov.transpose(0, 2, 1)) / 2.0  # symmetric to the bit, whatever order the products summed in
    cov[:, rows, rows] += own_vol**2
    return mu, cov


def simulate_closes(
    params: MarketParams, n_days: int, rng: np.random.Generator, initial_price: float = 100.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(n_days, K)`` closes and the ``(n_days,)`` regime path drawn with ``rng`` (no dates: the fast path for envs)."""
    closes, regimes = simulate_paths(params, n_days, [rng], initial_price)
    return closes[0], regimes[0]


def simulate_paths(
    params: MarketParams, n_days: int, rngs: Sequence[np.random.Generator], initial_price: float = 100.0
) -> tuple[np.ndarray, np.ndarray]:
    """One path per generator: ``(P, n_days, K)`` closes and ``(P, n_days)`` regimes.

    Path ``p`` draws from ``rngs[p]`` alone and in a fixed order (the first regime, then the chain's uniforms, then
    the return shocks), so it is the same path whichever other paths are drawn beside it: a vector env's
    sub-environment replays exactly what a single env seeded alike would. The regime chains of all paths advance
    together, one vectorised step per day.
    """
    n_regimes, n_assets = params.mu.shape
    n_paths = len(rngs)
    stationary = params.stationary()
    draws = np.empty((n_paths, n_days + 1))
    shocks = np.empty((n_paths, n_days - 1, n_assets))
    for p, rng in enumerate(rngs):
        # One call for what ``rng.choice(n_regimes, p=stationary)`` and ``rng.random(n_days)`` draw in turn (the
        # choice is one uniform against the cumulative probabilities): the same numbers, a third of the calls.
        rng.random(out=draws[p])
        rng.standard_normal(out=shocks[p])
    stationary_cdf = np.cumsum(stationary)
    stationary_cdf /= stationary_cdf[-1]
    uniforms = draws[:, 1:]
    regimes = np.empty((n_paths, n_days), dtype=np.int64)
    regimes[:, 0] = np.searchsorted(stationary_cdf, draws[:, 0], side="right")
    cumulative = np.cumsum(params.transition, axis=1)
    # following[t, p, r]: the regime path p moves to at day t if it was in r the day before (the first regime whose
    # cumulative transition probability exceeds the day's uniform: the count of those at or below it, capped), for
    # every r at once; the chain then only looks up, one flat gather per day.
    following = np.zeros((n_days, n_paths, n_regimes), dtype=np.int64)
    days_first = np.ascontiguousarray(uniforms.T)
    for r in range(n_regimes):
        for j in range(n_regimes - 1):  # the last cumulative probability is 1 (or a hair below): the cap
            following[..., r] += days_first >= cumulative[r, j]
    flat = following.reshape(-1)
    chain = np.empty((n_days, n_paths), dtype=np.int64)
    chain[0] = regimes[:, 0]
    where = np.arange(n_days * n_paths).reshape(n_days, n_paths) * n_regimes  # following[t, p, 0]'s flat index
    for t in range(1, n_days):
        np.add(where[t], chain[t - 1], out=where[t])
        np.take(flat, where[t], out=chain[t])
    regimes[:] = chain.T
    chol = np.linalg.cholesky(params.cov)
    # Every shock through every regime's Cholesky factor in one BLAS product, then each day keeps its regime's.
    n_shocks = n_paths * (n_days - 1)
    stacked = np.concatenate(chol, axis=0).T  # (A, K*A): column block r is chol[r].T
    every = shocks.reshape(n_shocks, n_assets) @ stacked
    drivers = regimes[:, :-1].reshape(n_shocks)
    closes = np.empty((n_paths, n_days, n_assets))  # log prices first, in place
    closes[:, 0] = 0.0
    kept = np.take(every.reshape(-1, n_assets), np.arange(0, n_shocks * n_regimes, n_regimes) + drivers, axis=0)
    kept += np.take(params.mu, drivers, axis=0)
    np.cumsum(kept.reshape(n_paths, n_days - 1, n_assets), axis=1, out=closes[:, 1:])
    np.exp(closes, out=closes)
    closes *= initial_price
    return closes, regimes


def law_path(params: MarketParams, dates: np.ndarray, rng: np.random.Generator, source: str) -> MarketData:
    """One fresh path of the law ``params`` on ``dates`` (closes from ``simulate_closes``), as market data."""
    closes, _ = simulate_closes(params, len(dates), rng)
    return MarketData(dates=dates, closes=closes, assets=params.assets, source=source)


def simulate(
    params: MarketParams, *, n_days: int, seed: int, start: str = "2000-01-03", initial_price: float = 100.0
) -> tuple[MarketData, np.ndarray]:
    """Simulate ``n_days`` business days of closes.

    :returns: the market and the ``(n_days,)`` regime path (``regimes[t]`` draws the return from ``t`` to ``t+1``).
    """
    if n_days < 2:
        raise ConfigError(f"n_days: {n_days} must be at least 2")
    closes, regimes = simulate_closes(params, n_days, np.random.default_rng(seed), initial_price)
    dates = pd.bdate_range(start, periods=n_days).to_numpy().astype("datetime64[D]")
    market = MarketData(dates=dates, closes=closes, assets=params.assets, source=f"synthetic(seed={seed})")
    return market, regimes


def default_market(
    seed: int = 7, years: float = 25.0, n_assets: int = 4, n_regimes: int = 3
) -> tuple[MarketData, MarketParams, np.ndarray]:
    """The built-in default data set: ``years`` of the default market law, deterministic per ``seed``."""
    params = default_params(n_assets=n_assets, n_regimes=n_regimes, seed=seed)
    market, regimes = simulate(params, n_days=int(round(years * TRADING_DAYS_PER_YEAR)) + 1, seed=seed)
    return market, params, regimes


def params_path(csv_path: str | Path) -> Path:
    """The ``FILE.params.json`` beside a synthetic ``FILE.csv``."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + ".params.json")


def load_params(csv_path: str | Path) -> tuple[MarketParams, np.ndarray] | None:
    """True law and regime path of a synthetic CSV, or ``None`` for a CSV without ``.params.json``."""
    path = params_path(csv_path)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return MarketParams.from_json(data), np.asarray(data["regime_path"], dtype=np.int64)
