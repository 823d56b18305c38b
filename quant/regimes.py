"""Market regimes: a Gaussian hidden Markov model of daily log returns, and the causal filter the agents observe.

Model (Hamilton 1989): regime ``z_j`` in ``0..K-1`` draws day ``j``'s log returns ``r_j ~ N(mu_k, S_k)``;
regimes follow a Markov chain with transition matrix ``G``. It is fitted by EM (hmmlearn's ``GaussianHMM``) on the
train split's returns only, with ``K`` given or chosen by BIC, deterministically for a seed; ``S_k`` is full, tied,
diagonal or a factor structure, given or chosen by BIC with ``K`` (``quant.regime_em``), and always carried as full
matrices.
A synthetic market's true law is the same model (``envs.synthetic``: the regime at close ``t`` draws ``r[t+1]``).

Filter (Wonham 1965; Elliott 1993 in discrete time): ``a_j`` is proportional to ``(a_{j-1} G) * N(r_j; mu, S)``, so
``a_j`` uses returns up to day ``j`` only; ``a_j G`` is the distribution of the regime that draws tomorrow's return.

What agents observe is ``windowed_filter``: the filter run over the last ``window_days`` returns from the stationary
distribution. That one definition serves the env, validation, backtests and the server (which sees only the closes
a request posts), and it matches the filter over the whole history once the window is long enough for the start to
be forgotten (``forgetting_days`` measures how long).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from core.errors import ConfigError, DataError

SCALE = 100.0  # fit in percent: EM's covariance floor and tolerances suit unit-sized data
MIN_OCCUPANCY = 0.02  # BIC's candidates need every regime at least this often in the stationary distribution
RESCALE_EVERY = 8  # windowed_filter: products of 8 days' matrices stay far from float64's underflow


@dataclass(frozen=True, eq=False)
class RegimeModel:
    """``K`` regimes over ``A`` assets, ordered from the calmest (smallest total variance) up.

    :param transition: ``(K, K)``, rows sum to 1.
    :param means: ``(K, A)`` mean daily log returns.
    :param covariances: ``(K, A, A)`` daily log-return covariances.
    :param source: ``fitted`` (on a train split) or ``true law`` (a synthetic market's).
    """

    transition: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    source: str = "fitted"

    @property
    def n_regimes(self) -> int:
        return self.transition.shape[0]

    def stationary(self) -> np.ndarray:
        """``(K,)`` stationary distribution of the chain (left eigenvector of ``G`` for eigenvalue 1)."""
        values, vectors = np.linalg.eig(self.transition.T)
        pi = np.abs(np.real(vectors[:, np.argmin(np.abs(values - 1.0))]))
        return pi / pi.sum()

    def log_densities(self, log_returns: np.ndarray) -> np.ndarray:
        """``(T, K)`` log density of each day's returns (``(T, A)``) under each regime."""
        return self.log_density_rows(log_returns).T

    def log_density_rows(self, log_returns: np.ndarray) -> np.ndarray:
        """``(K, T)``: ``log_densities`` with the regimes along the rows, as it is computed."""
        stacked, shifts, log_normaliser = self._factors
        # Days along the columns: all regimes' whitening is one (K*A, A) @ (A, T) BLAS call, where (T, A) @ (A, A)
        # with a small A, or a (T, K, A) einsum, is 20 to 60 times slower.
        columns = np.ascontiguousarray(np.asarray(log_returns, dtype=np.float64).T)
        whitened = stacked @ columns
        whitened -= shifts
        whitened *= whitened
        n_assets = columns.shape[0]
        distances = whitened.reshape(self.n_regimes, n_assets, -1).sum(axis=1)
        distances *= -0.5
        distances += log_normaliser[:, None]
        return distances

    @cached_property
    def _factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The regime densities' inverse Cholesky factors stacked ``(K*A, A)``, each applied to its mean
        ``(K*A, 1)``, and log normalising constants ``(K,)``."""
        try:
            factors = np.linalg.cholesky(self.covariances)
        except np.linalg.LinAlgError:
            raise ConfigError("regime model: a covariance matrix is not positive definite") from None
        n_regimes, n_assets = self.means.shape
        log_det = 2.0 * np.log(np.diagonal(factors, axis1=1, axis2=2)).sum(axis=1)
        inverse = np.linalg.inv(factors)
        shifts = np.einsum("kij,kj->ki", inverse, self.means).reshape(-1, 1)
        return (
            inverse.reshape(n_regimes * n_assets, n_assets),
            shifts,
            -0.5 * (log_det + n_assets * np.log(2.0 * np.pi)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "transition": self.transition.tolist(),
            "means": self.means.tolist(),
            "covariances": self.covariances.tolist(),
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> RegimeModel:
        return cls(
            transition=np.asarray(record["transition"], dtype=np.float64),
            means=np.asarray(record["means"], dtype=np.float64),
            covariances=np.asarray(record["covariances"], dtype=np.float64),
            source=str(record.get("source", "fitted")),
        )


def _likelihoods(model: RegimeModel, log_returns: np.ndarray) -> np.ndarray:
    """Per-day likelihoods ``(..., T, K)`` rescaled by each day's largest (harmless: the filter normalises)."""
    returns = np.asarray(log_returns, dtype=np.float64)
    return _likelihood_rows(model, returns).T.reshape(*returns.shape[:-1], -1)


def _likelihood_rows(model: RegimeModel, log_returns: np.ndarray) -> np.ndarray:
    """``(K, N)``: ``_likelihoods`` of ``log_returns`` (``(..., A)``, flattened to ``N`` days) with the regimes along
    the rows, in the layout they are computed in."""
    returns = np.asarray(log_returns, dtype=np.float64)
    log_density = model.log_density_rows(returns.reshape(-1, returns.shape[-1]))
    log_density -= log_density.max(axis=0)
    return np.exp(log_density, out=log_density)


def filter_probabilities(model: RegimeModel, log_returns: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """``(T, K)`` filtered probabilities over the whole history ``(T, A)``, from ``start`` (default stationary)."""
    likelihood = _likelihoods(model, log_returns)
    belief = model.stationary() if start is None else np.asarray(start, dtype=np.float64)
    out = np.empty_like(likelihood)
    for j in range(len(likelihood)):
        belief = (belief @ model.transition) * likelihood[j]
        belief /= belief.sum()
        out[j] = belief
    return out


def windowed_filter(model: RegimeModel, log_returns: np.ndarray, window_days: int) -> np.ndarray:
    """``(..., T, K)``: row ``j`` is the filter over returns ``j - window_days + 1 .. j`` (``(..., T, A)``, any
    leading batch dimensions: paths) from the stationary distribution; rows before ``window_days - 1`` are NaN.

    Each row is ``pi M_s ... M_e`` normalised, with ``M_i = G diag(l_i)`` (``l_i``: day ``i``'s likelihoods).
    Rather than running the filter ``window_days`` steps for every row, the days are cut into blocks of
    ``window_days``: a window that starts at offset ``o + 1`` of a block ends at offset ``o`` of the next, so it is
    ``pi`` times a suffix product of the one block times a prefix product of the next (a window that starts at
    offset 0 is one whole block). One pass over the offsets advances, for all paths and blocks at once, the
    suffixes backwards from each block's end and the prefixes forwards from its start, as ``X <- diag(l) B X``
    with ``B = G`` for ``S'_o = diag(l_o) G S'_{o+1}`` (``S_o = G S'_o``, so ``pi S_o = (pi G) S'_o``) and ``B =
    G^T`` for the transposed prefix ``P_o^T = diag(l_o) G^T P_{o-1}^T``: one BLAS call with a block-diagonal
    ``(2K, 2K)`` matrix and one scaling a step, ``M_i`` never formed. Products are rescaled to sum 1 every
    ``RESCALE_EVERY`` steps (the final normalisation makes the scale irrelevant).
    """
    returns = np.asarray(log_returns, dtype=np.float64)
    *lead, n_days, _ = returns.shape
    n_regimes, width = model.n_regimes, window_days
    out = np.full((*lead, n_days, n_regimes), np.nan)
    rows = n_days - width + 1  # window s covers days s .. s + width - 1
    if rows <= 0:
        return out
    likelihood = _likelihood_rows(model, returns).reshape(n_regimes, -1, n_days)
    n_paths = likelihood.shape[1]
    n_starts = (rows - 1) // width + 1  # blocks 0 .. n_starts - 1 hold window starts, 1 .. n_starts their ends
    # by_day[offset, k, block, path]: day block * width + offset, blocks 0 .. n_starts (likelihood 1 past the
    # last day: never read into a window).
    padded = np.ones((n_regimes, n_paths, (n_starts + 1) * width))  # (n_starts + 1) * width > n_days
    padded[..., :n_days] = likelihood
    by_day = padded.reshape(n_regimes, n_paths, n_starts + 1, width).transpose(3, 0, 2, 1)
    # step_scale[t]: the suffixes' day (offset width - 1 - t of blocks 0..) above the prefixes' (offset t of 1..).
    step_scale = np.empty((width, 2 * n_regimes, n_starts, n_paths, 1))
    step_scale[:, :n_regimes, ..., 0] = by_day[::-1, :, :n_starts]
    step_scale[:, n_regimes:, ..., 0] = by_day[:, :, 1:]
    transition = model.transition
    both = np.zeros((2 * n_regimes, 2 * n_regimes))
    both[:n_regimes, :n_regimes], both[n_regimes:, n_regimes:] = transition, transition.T
    # state[:K] = S'[i, block, path, j], state[K:] = P^T[j, block, path, i], at their first day: diag(l) and
    # diag(l) G^T.
    state, spare = np.empty((2, 2 * n_regimes, n_starts, n_paths, n_regimes))
    state[:n_regimes] = np.eye(n_regimes)[:, None, None, :]
    state[n_regimes:] = transition.T[:, None, None, :]
    state *= step_scale[0]
    pi_g = model.stationary() @ transition
    heads = np.empty((width, n_starts * n_paths * n_regimes))  # heads[o] = pi S_o of each start block, by offset
    prefixes = np.empty((width, n_regimes, n_starts, n_paths, n_regimes))  # prefixes[o] = P_o^T of blocks 1..
    np.matmul(pi_g, state[:n_regimes].reshape(n_regimes, -1), out=heads[width - 1])
    prefixes[0] = state[n_regimes:]
    flat, flat_spare = state.reshape(2 * n_regimes, -1), spare.reshape(2 * n_regimes, -1)
    for t in range(1, width):
        np.matmul(both, flat, out=flat_spare)
        state, spare, flat, flat_spare = spare, state, flat_spare, flat
        state *= step_scale[t]
        if t % RESCALE_EVERY == 0:  # each step shrinks a product by at most a rare transition's probability
            halves = state.reshape(2, n_regimes, n_starts, n_paths, n_regimes)
            halves /= halves.sum(axis=(1, 4), keepdims=True)
        np.matmul(pi_g, flat[:n_regimes], out=heads[width - 1 - t])
        prefixes[t] = state[n_regimes:]
    heads = heads.reshape(width, n_starts, n_paths, n_regimes)
    # Window s = b * width + o: block b when o = 0 (heads[0, b]); else it starts at offset o of block b and ends at
    # offset o - 1 of block b + 1 (heads[o, b] @ P_{o-1} of block b + 1). Laid out path-major, as returned.
    belief = np.empty((n_paths, n_starts, width, n_regimes))
    belief[:, :, 0] = heads[0].transpose(1, 0, 2)
    terms = np.multiply(prefixes[:-1], heads[1:, None])  # (offset, j, block, path, i)
    belief[:, :, 1:] = _sum_last(terms).transpose(3, 2, 0, 1)
    belief = belief.reshape(n_paths, n_starts * width, n_regimes)[:, :rows]
    belief /= _sum_last(belief)[..., None]
    out.reshape(n_paths, n_days, n_regimes)[:, width - 1 :] = belief
    return out


def daily_filters(model: RegimeModel, log_returns: np.ndarray, first: int, window_days: int) -> np.ndarray:
    """``(..., T - first, R)``: day ``t``'s filter for every day ``t >= first`` of a history whose ``log_returns``
    (``(..., T - 1, A)``) has row ``i`` for day ``i + 1``'s return, so day ``t``'s filter is ``windowed_filter``'s row
    ``t - 1``. Only the returns those days' windows read are filtered (``first >= window_days``)."""
    return windowed_filter(model, log_returns[..., first - window_days :, :], window_days)[..., window_days - 1 :, :]


def latest_filter(model: RegimeModel, closes: np.ndarray, window_days: int) -> np.ndarray:
    """``(R,)``: ``daily_filters`` at the last day of ``closes`` (``(T, A)``, at least ``window_days + 1`` rows):
    what the server needs per request, computed once for both the observation's regime probabilities and a
    ``regime_growth`` base (``serving.agents.PolicyAgent``)."""
    tail = np.asarray(closes[-(window_days + 1) :], dtype=np.float64)
    if tail.shape[0] < window_days + 1:
        raise ValueError(f"the regime filter needs {window_days + 1} closes, got {tail.shape[0]}")
    return daily_filters(model, np.diff(np.log(tail), axis=0), window_days, window_days)[-1]


def _sum_last(values: np.ndarray) -> np.ndarray:
    """``values.sum(axis=-1)`` over a short last axis (the regimes) as adds of its slices: numpy's reduction loops
    over a length-3 axis take about ten times as long."""
    total = values[..., 0].copy()
    for k in range(1, values.shape[-1]):
        total += values[..., k]
    return total


def predicted_over_window(model: RegimeModel, closes: Sequence[np.ndarray], window_days: int) -> np.ndarray:
    """``(N, K)``: for each history of closes (``(T_i, A)``, oldest first), the distribution of the regime that
    draws the next return, by the filter over its last ``window_days`` returns (all of them when it has fewer) from
    the stationary distribution: the last row of ``windowed_filter``, times ``G``. Histories of any lengths are
    filtered together; a shorter one is padded at its start with days that carry no information (likelihood 1),
    which leave the stationary start as it is."""
    likelihood = np.ones((len(closes), window_days, model.n_regimes))
    for i, history in enumerate(closes):
        returns = np.diff(np.log(history[-(window_days + 1) :]), axis=0)
        if len(returns):
            likelihood[i, window_days - len(returns) :] = _likelihoods(model, returns)
    belief = np.repeat(model.stationary()[None, :], len(closes), axis=0)
    for day in range(window_days):
        belief = (belief @ model.transition) * likelihood[:, day]
        belief /= belief.sum(axis=1, keepdims=True)
    return belief @ model.transition


class RunningFilter:
    """The filter over a growing history, from the stationary distribution at its first day, advanced only by the
    days added since the last call (a backtest asks once per decision day; anything but a longer copy of the same
    history starts over)."""

    def __init__(self, model: RegimeModel) -> None:
        self.model = model
        self._days = 0
        self._last_close: np.ndarray | None = None
        self._belief = model.stationary()

    def update(self, closes: np.ndarray) -> np.ndarray:
        """``(K,)`` filtered probabilities after the last day of ``closes`` (``(T, A)``, oldest first)."""
        days = closes.shape[0]
        continues = 0 < self._days <= days and np.array_equal(closes[self._days - 1], self._last_close)
        if not continues:
            self._days, self._belief = 1, self.model.stationary()
        if days > self._days:
            returns = np.diff(np.log(closes[self._days - 1 :]), axis=0)
            likelihood = _likelihoods(self.model, returns)
            belief = self._belief
            for row in likelihood:
                belief = (belief @ self.model.transition) * row
                belief = belief / belief.sum()
            self._belief = belief
        self._days, self._last_close = days, np.array(closes[-1])
        return self._belief

    def predicted(self, closes: np.ndarray) -> np.ndarray:
        """``(K,)`` distribution of the regime that draws the next day's return."""
        return self.update(closes) @ self.model.transition


def forgetting_days(model: RegimeModel, log_returns: np.ndarray, tolerance: float = 1e-3, longest: int = 500) -> int:
    """Fewest days of returns after which the windowed filter stays within ``tolerance`` (largest absolute
    difference of any probability, on any day) of the filter over the whole history, on ``log_returns``."""
    if len(log_returns) <= 2 * longest:
        raise DataError(f"forgetting_days needs more than {2 * longest} days of returns, got {len(log_returns)}")
    full = filter_probabilities(model, log_returns)[longest:]
    for window in range(5, longest + 1, 5):
        gap = np.abs(windowed_filter(model, log_returns, window)[longest:] - full).max()
        if gap <= tolerance:
            return window
    return longest


def fit_regimes(
    log_returns: np.ndarray,
    n_regimes: int | str = "bic",
    *,
    covariance: str = "full",
    max_regimes: int = 4,
    seed: int = 0,
    iterations: int = 200,
    restarts: int = 4,
    where: str = "regimes",
) -> RegimeModel:
    """The model ``quant.regime_em.select_regimes`` chooses, by default with a full covariance per regime (the one
    structure fitted before the others existed; configs choose with ``covariance``, ``auto`` by default)."""
    from quant.regime_em import select_regimes

    return select_regimes(
        log_returns,
        n_regimes,
        covariance=covariance,
        max_regimes=max_regimes,
        seed=seed,
        iterations=iterations,
        restarts=restarts,
        where=where,
    ).model


def from_law(transition: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> RegimeModel:
    """A synthetic market's true law as a ``RegimeModel`` (regimes in the law's own order)."""
    return RegimeModel(
        np.asarray(transition, dtype=np.float64),
        np.asarray(mu, dtype=np.float64),
        np.asarray(cov, dtype=np.float64),
        source="true law",
    )
