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
from envs.regimes import fitted_regime_model
from envs.synthetic import law_path
from quant.regimes import RegimeModel
from quant.registry import BASELINES, BaselinesConfig, make_baseline

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
        rate, _ = tune_regime_trade_rate(data, market, regimes)
        first, last = market.dates[splits["validation"].first], market.dates[splits["validation"].last]
        paths = None
        method = f"stationary block bootstrap of the validation days (mean block {gate.bootstrap_block_days:g} days)"
        description = f"{market.source} {first} .. {last} ({validation.n_steps} days)"
        if env.trains_on_law and reference.validation_paths > 0:
            n_days = widest.warmup_days + validation.n_steps + 1
            paths = []
            for i in range(gate.paths):
                rng = np.random.default_rng(
                    np.random.SeedSequence([reference.data.synthetic_seed, GATE_SEED_KEY, gate.seed, i])
                )
                paths.append(law_path(env.law, market.dates[:n_days], rng, f"gate path {i}"))
            method = f"{gate.paths} fresh paths of the market's law, paired (estimated baselines: the first {gate.estimated_paths})"
            description = f"{gate.paths} law paths of {validation.n_steps} days, seeds kept for the gate"
        return cls(data, market, paths, validation.n_steps, regimes, rate, method, description)

    def adapt(self, config: EnvConfig) -> EnvConfig:
        """An agent's config on the frame's split dates (its own features, base and actions kept)."""
        return config.model_copy(update={"data": self.data.data})


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
