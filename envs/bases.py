"""A residual policy's base (``envs.config.PolicyConfig``): the classical strategy whose target weights the agent's
action tilts, decided every day from the closes seen so far by the registry's own code (``quant.registry``,
``Baseline.targets_path``). The env appends them to its features, so the observation carries the base the action
tilts; the vector env, backtests, the gate and the server read it from there, or compute it with this class from the
same closes, so it is the same number everywhere (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.errors import ConfigError
from envs.config import EnvConfig
from quant.regimes import RegimeModel
from quant.registry import BASELINES, make_baseline
from quant.strategies import FilteredGrowth


class ResidualBase:
    """The base of ``config.policy`` over ``assets``; ``regimes``: the fitted regime model (``regime_growth``).

    :raises ConfigError: the base filters with a regime model and none was given (naming the base).
    """

    def __init__(self, config: EnvConfig, assets: Sequence[str], regimes: RegimeModel | None) -> None:
        name = config.policy.base
        if name == "none":
            raise ValueError("policy.base is 'none': there is no base to compute")
        if config.base_needs_regimes and regimes is None:
            raise ConfigError(f"policy.base: '{name}' filters with a fitted regime model, and none is available")
        self.name = name
        self.estimated = BASELINES[name].estimated
        self.warmup_days = config.base_warmup_days
        self.strategy = make_baseline(name, assets, config.policy.baselines, regimes, config.regimes.window_days)

    def targets(self, closes: np.ndarray, first: int | None = None) -> np.ndarray:
        """``(..., T, K)`` float32: row ``t`` is the base's weights at decision day ``t`` of each path of ``closes``
        (``(..., T, K)``); rows before the base's warm-up (and before ``first``, when given) are NaN."""
        closes = np.asarray(closes, dtype=np.float64)
        *paths, n_days, n_assets = closes.shape
        first = max(self.warmup_days, first or 0)
        out = np.full((*paths, n_days, n_assets), np.nan, dtype=np.float32)
        if n_days <= first:
            return out
        flat = closes.reshape(-1, n_days, n_assets)
        rows = np.stack([self.strategy.targets_path(path, first) for path in flat])
        out.reshape(-1, n_days, n_assets)[:, first:] = rows
        return out

    def latest(self, closes: np.ndarray, filtered: np.ndarray | None = None) -> np.ndarray:
        """``(K,)`` float32: the base at the last day of ``closes`` (``(T, K)``, at least ``warmup_days + 1`` rows),
        what the server appends to a request's observation. ``filtered``: that day's regime filter
        (``quant.regimes.latest_filter``) when the caller has it and ``filters_with`` says it is the base's own."""
        closes = np.asarray(closes, dtype=np.float64)
        if closes.shape[0] < self.warmup_days + 1:
            raise ValueError(f"base '{self.name}' needs at least {self.warmup_days + 1} closes, got {closes.shape[0]}")
        if filtered is not None:
            return self.strategy.optima(np.asarray(filtered, dtype=np.float64)[None, :])[0].astype(np.float32)
        return self.strategy.target(closes[-(self.warmup_days + 1) :]).astype(np.float32)

    def filters_with(self, model: RegimeModel | None, window_days: int) -> bool:
        """Whether the base decides from ``model``'s filter over the last ``window_days`` returns alone (then
        ``latest`` can take that filter rather than compute it again)."""
        strategy = self.strategy
        return (
            isinstance(strategy, FilteredGrowth)
            and model is not None
            and strategy.model is model
            and strategy.window_days == window_days
            and strategy.cost_rate == 0
        )


def tilted_base(observed: np.ndarray) -> np.ndarray:
    """``(..., K)`` float64: observed (float32) base weights as the action map tilts them, renormalised after their
    rounding. The env, the vector env and every policy (``observed_base``) take the base through here."""
    base = np.asarray(observed, dtype=np.float64)
    return base / base.sum(axis=-1, keepdims=True)


def observed_base(observation: np.ndarray, n_assets: int) -> np.ndarray:
    """``tilted_base`` of the ``K`` entries an observation carries before the held weights."""
    return tilted_base(observation[..., -2 * n_assets : -n_assets])
