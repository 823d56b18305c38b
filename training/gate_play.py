"""What the promotion gate plays (``training.gate``): every candidate on the same validation days and costs, as
``(P, S)`` daily net log growth over ``P`` pairs of paths (one: the data's validation split) and ``S`` days."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backtesting.backtest import (
    PolicyStrategy,
    evaluation_env,
    path_env,
    run_backtest,
    run_batched,
    run_batched_strategy,
)
from backtesting.tuning import tune_regime_trade_rate
from core.errors import ConfigError
from envs.config import EnvConfig
from envs.market import MarketData
from envs.portfolio_env import PortfolioEnv
from envs.regimes import carry_regime_model, fitted_regime_model
from envs.synthetic import law_path
from quant.regimes import RegimeModel
from quant.registry import BASELINES, BaselinesConfig, closes_needed, make_baseline
from training.validation import VALIDATION_SEED_KEY

GATE_SEED_KEY = 0x6A7E  # the gate's law paths: SeedSequence([synthetic_seed, key, seed, i]), apart from validation's


@dataclass
class Frame:
    """The common frame: one data set, split by the same dates for every candidate, its validation days (or law
    paths of the validation's length) after the largest warm-up, and the regime model and rate of ``regime_growth``."""

    data: EnvConfig  # the reference config, its split boundaries as dates, no residual base: what baselines play
    market: MarketData
    paths: list[MarketData] | None  # fresh law paths, or None: the data's validation split
    days: int
    regimes: RegimeModel | None
    regime_trade_rate: float | None
    method: str
    description: str

    @classmethod
    def of(cls, configs: Sequence[EnvConfig], gate) -> Frame:
        """The frame of agents trained with ``configs`` (one data set and universe), for ``gate`` (``GateConfig``)."""
        reference = configs[0]
        if any(
            c.data.model_copy(update={"train_end": 0, "validation_end": 0})
            != reference.data.model_copy(update={"train_end": 0, "validation_end": 0})
            for c in configs
        ):
            raise ConfigError("gate: the agents were trained on different data; gate them in separate models folders")
        widest = max(configs, key=lambda c: c.warmup_days)
        env = PortfolioEnv(widest)  # its splits leave room for every candidate's warm-up
        market, splits = env.market, env.splits
        dates = {
            "train_end": str(market.dates[splits["train"].last]),
            "validation_end": str(market.dates[splits["validation"].last]),
        }
        base_free = reference.policy.model_copy(update={"base": "none"})
        data = widest.model_copy(update={"data": reference.data.model_copy(update=dates), "policy": base_free})
        validation = evaluation_env(data, "validation", market=market)
        regimes = fitted_regime_model(data, market, splits["train"])
        data = carry_regime_model(data, regimes)  # observed regimes on every path filter with one model, never refit
        first, last = market.dates[splits["validation"].first], market.dates[splits["validation"].last]
        paths, rate = None, None
        method = f"stationary block bootstrap of the validation days (mean block {gate.bootstrap_block_days:g} days)"
        description = f"{market.source} {first} .. {last} ({validation.n_steps} days)"
        if env.trains_on_law and reference.validation_paths > 0:
            # Every candidate gets the history it would have on the data: the widest warm-up, the regime window, the
            # estimated baselines' lookback; all are compared on the last validation.n_steps days.
            history = max(
                [widest.warmup_days, data.regimes.window_days]
                + [closes_needed(n, regime_window_days=data.regimes.window_days) - 1 for n in gate.baselines]
            )
            dates, seed = _dates(market, history + validation.n_steps + 1), reference.data.synthetic_seed
            paths = law_paths(env.law, dates, gate.paths, [seed, GATE_SEED_KEY, gate.seed], "gate path")
            # the rate is chosen on the validation seeds (those that selected the modules), not on the gate's own
            tuning = law_paths(
                env.law, dates, reference.validation_paths, [seed, VALIDATION_SEED_KEY], "validation path"
            )
            rate, _ = tune_regime_trade_rate(data, market, regimes, paths=tuning)
            method = f"{gate.paths} fresh paths of the market's law, paired (estimated baselines: the first {gate.estimated_paths}; regime_growth's rate chosen on {reference.validation_paths} validation paths)"
            description = f"{gate.paths} law paths of {validation.n_steps} days, seeds kept for the gate"
        else:
            rate, _ = tune_regime_trade_rate(data, market, regimes)
        return cls(data, market, paths, validation.n_steps, regimes, rate, method, description)

    def adapt(self, config: EnvConfig) -> EnvConfig:
        """An agent's config on the frame's split dates (its own features, base and actions kept)."""
        return config.model_copy(update={"data": self.data.data})


def law_paths(law, dates: np.ndarray, n_paths: int, key: list[int], label: str) -> list[MarketData]:
    """``n_paths`` fresh paths of ``law`` on ``dates``, path ``i`` from ``SeedSequence([*key, i])``."""
    return [
        law_path(law, dates, np.random.default_rng(np.random.SeedSequence([*key, i])), f"{label} {i}")
        for i in range(n_paths)
    ]


def _dates(market: MarketData, n_days: int) -> np.ndarray:
    """``n_days`` business dates: the market's first ones, extended when the market is shorter."""
    if n_days <= len(market.dates):
        return market.dates[:n_days]
    import pandas as pd

    return pd.bdate_range(str(market.dates[0]), periods=n_days).to_numpy().astype("datetime64[D]")


def _last(results, days: int) -> np.ndarray:
    return np.stack([r.log_growth[-days:] for r in results])


def play_agents(frame: Frame, agents: dict) -> dict[str, np.ndarray]:
    """``name -> (P, S)`` for every agent (``name -> (Policy, EnvConfig)``)."""
    out = {}
    for name, (policy, env_config) in agents.items():
        config = frame.adapt(env_config)
        if frame.paths is None:
            env = evaluation_env(config, "validation", market=frame.market)
            out[name] = _last([run_backtest(PolicyStrategy(name, policy.weights), env)], frame.days)
        else:
            envs = [path_env(config, path) for path in frame.paths]
            out[name] = _last(run_batched(name, policy.weights_batch, envs), frame.days)
    return out


def play_baselines(frame: Frame, names: Sequence[str], gate) -> dict[str, np.ndarray]:
    """``name -> (P, S)`` for the routable baselines ``names``, with the frame's regime model and rate."""
    settings = BaselinesConfig(regime_trade_rate=frame.regime_trade_rate)
    window = frame.data.regimes.window_days
    out = {}
    for name in names:
        strategy = make_baseline(name, frame.market.assets, settings, frame.regimes, window)
        if frame.paths is None:
            env = evaluation_env(frame.data, "validation", market=frame.market)
            out[name] = _last([run_backtest(strategy, env)], frame.days)
        else:
            paths = frame.paths[: gate.estimated_paths] if BASELINES[name].estimated else frame.paths
            out[name] = _last(run_batched_strategy(strategy, [path_env(frame.data, p) for p in paths]), frame.days)
    return out
