"""Classical strategies: each decides from prices up to the decision day only (``History``), and trades under the
same costs as every agent.

Interface (shared with RL policies wrapped by ``backtesting.backtest.PolicyStrategy``): a strategy has a ``name``,
a ``rebalance_every_days`` schedule and ``weights(history) -> (K,) np.ndarray`` where ``history`` is a ``History``
(closes up to and including day ``t``, weights held, the env's observation); ``weights_batch`` decides for ``N``
histories in lockstep. Which strategies exist, with which parameters, is ``quant.registry``.

Estimated strategies fit on the last ``lookback_days`` daily returns. Mean-variance, minimum variance and risk parity
use skfolio (``MeanRisk``, ``RiskBudgeting``); the growth-optimal mix uses the same solver as the oracles
(``quant.growth.growth_optimal_weights``) on estimated moments, so the two differ only in what they know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError
from quant.growth import growth_optimal_batch, growth_optimal_net_of_costs, growth_optimal_weights, mixture_inputs
from quant.regimes import RegimeModel, RunningFilter, daily_filters, predicted_over_window


@dataclass(frozen=True)
class History:
    """What a strategy may see at the close of decision day ``t``.

    :param closes: ``(t+1, K)`` closes up to and including day ``t`` (read-only).
    :param held: ``(K,)`` weights held after the day's drift.
    :param observation: the env's observation at ``t`` (empty where there is no env, as in the server).
    """

    closes: np.ndarray
    held: np.ndarray
    observation: np.ndarray


@dataclass
class Baseline:
    """Base class: subclasses implement ``weights``."""

    name: str
    rebalance_every_days: int = 21

    def weights(self, history: History) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def weights_batch(self, histories: Sequence[History]) -> np.ndarray:
        """``(N, K)`` weights for ``N`` envs played in lockstep (``run_batched_strategy``); one at a time unless a
        subclass can do better."""
        return np.stack([self.weights(h) for h in histories])

    def targets_path(self, closes: np.ndarray, first: int) -> np.ndarray:
        """``(T - first, K)``: row ``j`` is the weights the strategy would decide at day ``first + j`` from
        ``closes[: first + j + 1]`` alone, every day (no schedule) and before any partial adjustment towards them.
        This is a residual policy's base (``envs.bases``): the env, the vector env, backtests and the server all take
        it from here, so it is the same number wherever the same closes are posted. One decision a day unless a
        subclass can do better."""
        closes = np.asarray(closes, dtype=np.float64)
        n_assets = closes.shape[1]
        held, empty = np.full(n_assets, 1.0 / n_assets), np.empty(0, dtype=np.float32)
        return np.stack([self.weights(History(closes[: t + 1], held, empty)) for t in range(first, closes.shape[0])])

    def target(self, closes: np.ndarray) -> np.ndarray:
        """``(K,)``: ``targets_path`` at the last day of ``closes`` (what the server computes per request)."""
        return self.targets_path(closes, closes.shape[0] - 1)[0]


@dataclass
class EqualWeight(Baseline):
    """``1/K`` in every asset, rebalanced on schedule."""

    def weights(self, history: History) -> np.ndarray:
        n_assets = history.closes.shape[1]
        return np.full(n_assets, 1.0 / n_assets)

    def targets_path(self, closes: np.ndarray, first: int) -> np.ndarray:
        n_days, n_assets = np.shape(closes)
        return np.full((n_days - first, n_assets), 1.0 / n_assets)


@dataclass
class BuyAndHold(Baseline):
    """Equal weights bought at the start (the env's initial book), then never traded."""

    def weights(self, history: History) -> np.ndarray:
        return np.array(history.held, dtype=np.float64)


@dataclass
class FixedMix(Baseline):
    """Constant target weights (e.g. 60/40), rebalanced on schedule."""

    target: np.ndarray | None = None

    def weights(self, history: History) -> np.ndarray:
        return self.target.copy()


@dataclass
class _Estimated(Baseline):
    lookback_days: int = 252

    def returns_window(self, history: History) -> np.ndarray | None:
        """``(L, K)`` simple daily returns of the last ``lookback_days`` days; ``None`` if fewer than ``2K + 2``."""
        closes = history.closes[-(self.lookback_days + 1) :]
        if closes.shape[0] < 2 * closes.shape[1] + 3:
            return None
        return closes[1:] / closes[:-1] - 1.0

    def weights(self, history: History) -> np.ndarray:
        returns = self.returns_window(history)
        if returns is None:  # not enough history yet: hold equal weights, as a practitioner would
            return np.full(history.closes.shape[1], 1.0 / history.closes.shape[1])
        weights = np.clip(np.asarray(self.fit(returns), dtype=np.float64), 0.0, None)
        return weights / weights.sum()

    def fit(self, returns: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class MinimumVariance(_Estimated):
    """Long-only minimum variance (skfolio ``MeanRisk``, variance)."""

    def fit(self, returns: np.ndarray) -> np.ndarray:
        from skfolio.optimization import MeanRisk

        return MeanRisk().fit(returns).weights_


@dataclass
class MeanVariance(_Estimated):
    """Long-only maximum Sharpe ratio on sample moments (skfolio ``MeanRisk``, ``MAXIMIZE_RATIO``).

    When no asset's mean return in the window is positive the maximum Sharpe ratio does not exist (skfolio refuses
    it); the strategy then holds the minimum-variance portfolio, the low-risk end of the same efficient frontier.
    """

    def fit(self, returns: np.ndarray) -> np.ndarray:
        from skfolio.optimization import MeanRisk, ObjectiveFunction

        if returns.mean(axis=0).max() <= 0.0:
            return MeanRisk().fit(returns).weights_
        return MeanRisk(objective_function=ObjectiveFunction.MAXIMIZE_RATIO).fit(returns).weights_


@dataclass
class RiskParity(_Estimated):
    """Equal risk contribution under the sample covariance (skfolio ``RiskBudgeting``)."""

    def fit(self, returns: np.ndarray) -> np.ndarray:
        from skfolio.optimization import RiskBudgeting

        return RiskBudgeting().fit(returns).weights_


@dataclass
class GrowthOptimal(_Estimated):
    """Long-only multi-asset Kelly/Merton mix on estimated log-return moments (see ``envs.oracle``)."""

    def fit(self, returns: np.ndarray) -> np.ndarray:
        log_returns = np.log1p(returns)
        return growth_optimal_weights(log_returns.mean(axis=0), np.cov(log_returns, rowvar=False))


@dataclass
class RegimeOracle(Baseline):
    """Knows the synthetic market's regime at each close and holds that regime's growth-optimal mix."""

    regime_weights: np.ndarray | None = None  # (R, K)
    regime_path: np.ndarray | None = None  # (T,)

    def weights(self, history: History) -> np.ndarray:
        return self.regime_weights[self.regime_path[history.closes.shape[0] - 1]].copy()


@dataclass
class FilteredGrowth(Baseline):
    """Each rebalance day, the growth-optimal weights of the one-day predictive mixture: the probabilities of the
    regime that draws tomorrow's return, filtered from past returns, times each regime's law. A log-utility investor is myopic under partial information too (Longo and Mainini 2015), so
    without costs this is Bayes-optimal for the model it filters with.

    With a synthetic market's true law it is ``oracle_filtered``, the best a causal investor can do; with the law
    fitted on the train split it is the classical baseline ``regime_growth`` (any data). ``cost_rate > 0`` decides
    net of the trade's cost (``envs.oracle.growth_optimal_net_of_costs``); the default ignores costs in the decision,
    which are still charged.

    ``window_days``: the filter runs over the last ``window_days`` returns from the stationary distribution, the one
    definition the env's observations, the server and every backtest share (``quant.regimes.windowed_filter``), so a
    served ``regime_growth`` decides exactly as its backtest did from the closes a request posts; ``None`` filters
    over the whole history (the oracle, which has all of it).

    ``trade_rate``: partial adjustment (Garleanu and Pedersen 2013): each day it trades only this fraction of the way
    from the weights held to the filtered optimum, so the filter's day-to-day jitter costs little turnover while a
    lasting change of regime is followed geometrically (``regime_growth``'s rate is chosen on validation:
    ``backtesting.tuning``).
    """

    model: RegimeModel | None = None
    cost_rate: float = 0.0
    window_days: int | None = None
    trade_rate: float = 1.0

    def __post_init__(self) -> None:
        self._filters: list[RunningFilter] = []

    def weights(self, history: History) -> np.ndarray:
        return self.weights_batch([history])[0]

    def predicted(self, histories: Sequence[History]) -> np.ndarray:
        """``(N, R)`` distributions of the regime that draws each history's next return."""
        if self.window_days is not None:
            return predicted_over_window(self.model, [h.closes for h in histories], self.window_days)
        while len(self._filters) < len(histories):
            self._filters.append(RunningFilter(self.model))
        return np.stack([f.predicted(h.closes) for f, h in zip(self._filters, histories)])

    def weights_batch(self, histories: Sequence[History]) -> np.ndarray:
        """``(N, K)`` weights for ``N`` envs played in lockstep (one filter each, one batched solve)."""
        predicted = self.predicted(histories)
        mu, cov = mixture_inputs(predicted, self.model.means, self.model.covariances)
        if self.cost_rate > 0:
            target = np.stack(
                [growth_optimal_net_of_costs(m, c, h.held, self.cost_rate) for m, c, h in zip(mu, cov, histories)]
            )
        else:
            target = growth_optimal_batch(mu, cov)
        if self.trade_rate >= 1.0:
            return target
        held = np.stack([h.held for h in histories])
        return held + self.trade_rate * (target - held)

    def targets_path(self, closes: np.ndarray, first: int) -> np.ndarray:
        """The filtered optimum of every day from ``first`` on, in one windowed filter and one batched solve."""
        if self.window_days is None or self.cost_rate > 0:
            return super().targets_path(closes, first)
        if first < self.window_days:
            raise ValueError(f"{self.name}: a decision at day {first} has fewer than {self.window_days} returns")
        returns = np.diff(np.log(np.asarray(closes, dtype=np.float64)), axis=0)  # row i: the return of day i + 1
        return self.optima(daily_filters(self.model, returns, first, self.window_days))

    def optima(self, filtered: np.ndarray) -> np.ndarray:
        """``(N, K)``: the growth-optimal weights after each of ``filtered`` (``(N, R)``, a day's filter over the
        window): what ``targets_path`` decides from those days' filters, given them."""
        mu, cov = mixture_inputs(filtered @ self.model.transition, self.model.means, self.model.covariances)
        return growth_optimal_batch(mu, cov)


def fixed_mix_weights(assets: Sequence[str], mix: Mapping[str, float] | None) -> np.ndarray:
    """Weights of a fixed mix over ``assets``; default 60% first asset, 40% second (100% first if only one)."""
    if mix is None:
        mix = {assets[0]: 0.6, assets[1]: 0.4} if len(assets) > 1 else {assets[0]: 1.0}
    unknown = sorted(set(mix) - set(assets))
    if unknown:
        raise ConfigError(f"baselines.fixed_mix: unknown asset(s) {unknown}; assets are {list(assets)}")
    weights = np.array([float(mix.get(a, 0.0)) for a in assets])
    if (weights < 0).any() or not np.isclose(weights.sum(), 1.0, atol=1e-6):
        raise ConfigError(f"baselines.fixed_mix: weights must be non-negative and sum to 1, got {dict(mix)}")
    return weights
