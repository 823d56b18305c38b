"""``PortfolioEnv``: daily long-only allocation over K assets with proportional trading costs. Its specification is
the class docstring (Gymnasium's headings); docs/architecture.md ("Environment") summarises the contract.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from core.config import parse_config
from core.errors import ConfigError, DataError
from envs.accounting import rebalance
from envs.actions import ActionMap
from envs.bases import ResidualBase, tilted_base
from envs.bootstrap import bootstrap_closes
from envs.config import EnvConfig
from envs.features import compute_features, observation_size
from envs.layout import AssetLayout
from envs.market import MarketData
from envs.regimes import resolve_regime_model
from envs.sources import load_market
from envs.splits import Split, split_market
from envs.synthetic import MarketParams, simulate_paths
from envs.training_paths import path_source
from envs.universe import AssetSampler

ENV_ID = "rlportfolio/Portfolio-v0"


class PortfolioEnv(gym.Env):
    """Long-only daily portfolio allocation over K assets, with proportional trading costs.

    ## Description

    One step is one trading day. At the close of decision day ``t`` the agent sees features built from closes
    ``0..t`` only, picks target weights, pays the cost of trading to them and earns the price relatives
    ``close[t+1] / close[t]``. The observation at ``t`` never depends on a price after ``t`` (tested by perturbing
    every later price). Costs are ``cost_bps`` (default 10) per unit of turnover ``sum |w_new - w_held|``, charged
    by ``envs.accounting``; wealth compounds the net return. Gymnasium id and RLlib name ``rlportfolio/Portfolio-v0``
    (``import envs`` registers it; ``envs.register_rllib()`` for RLlib).

    ## Action Space

    | ``action_mode`` | space | weights |
    |---|---|---|
    | ``continuous`` | ``Box(-1, 1, (K,), float32)`` | ``softmax(softmax_scale * a)``; ``softmax_delta``: ``softmax(log(held) + softmax_scale * a)`` (the zero action holds); ``clip``: ``clip(a, 0, 1) / sum`` |
    | ``discrete`` | ``Discrete(C(grid_steps + K - 1, K - 1))`` | an index into the simplex grid of multiples of ``1 / grid_steps`` (4 assets at 25%: 35 actions); with ``discrete_hold`` one more, action 0, keeps the weights held |
    | ``discrete``, ``discrete_actions: factored`` | ``MultiDiscrete([L] * K)``, ``L = factored_levels`` (5) | one level per asset, the tilt ``2 l / (L - 1) - 1`` in ``[-1, 1]``, mapped as a continuous action: ``softmax(softmax_scale * tilt)`` (the middle level everywhere: equal weight) |

    With a residual base (``policy.base``) the action tilts the base's weights today instead:
    ``base ⊙ exp(tilt_scale * a)`` normalised (``Discrete(2K + 1)`` tilts for DQN, or per-asset factored levels),
    the zero action (the middle level) being the base.
    The target is reached at once, or only ``trade_rate`` of the way from the weights held (partial adjustment).

    ## Observation Space

    ``Box(-inf, inf, (W*K + K + E + R [+ K] + K,), float32)``, ``K`` the assets traded (all of the data's, or on
    the train split ``universe.sample_assets`` of them), in this order (``envs.features``, the one feature function the
    env, validation, backtests and the server share): the last ``W = window_days`` daily log returns per asset in
    percent, each asset's rolling volatility over ``vol_window_days`` in percent per day (its log with
    ``log_volatility``), the ``E`` extra columns at ``t`` (``observe_extras``), the ``R`` filtered regime
    probabilities (``observe_regimes``), the residual base's ``K`` weights at ``t`` (``policy.base``), and the weights
    held.

    ## Rewards

    ``reward_scale`` (default 100) times one of: ``log_growth`` (the day's net log growth ``log((1 - cost) * gross)``,
    default), ``excess_log_growth`` (that minus the log growth of equal weight rebalanced daily without costs: the same
    optimal policy with less noise), ``differential_sharpe`` (Moody & Saffell 2001) or ``mean_variance``
    (``R - risk_aversion / 2 * R^2``, ``R`` the net simple return).

    ## Starting State

    Wealth 1 and equal weights, at a uniformly random decision day of the split (``random_start``) or its first day.
    With ``train_paths: law`` (or ``auto`` on a synthetic market) each training episode plays a fresh ``episode_days``
    path of the market's true law instead of the train split. With ``universe.sample_assets: K`` each training
    episode then draws the ``K`` assets it trades (``envs.universe``: uniform without replacement, random order;
    ``episode_assets``); the regime probabilities stay those of the whole universe.

    ## Episode End

    ``terminated`` when the split's last return has been earned (a further step raises); ``truncated`` after
    ``episode_days`` steps (default 252; ``None`` for the whole split).

    ## Info

    ``reset``: ``wealth``, ``weights``, ``day``. ``step``: ``wealth``, ``weights`` (held after the day's drift),
    ``target_weights``, ``turnover``, ``cost`` (a fraction of wealth), ``log_growth`` (net), ``net_return`` and
    ``day`` (the index into the market's dates).

    ## Arguments

    ``config``: an ``envs.config.EnvConfig`` or a dict of its fields (every field documented there: the data and
    its splits, ``split``, the feature windows, the action map, ``cost_bps``, the reward, the episode length);
    ``market``: a ``MarketData`` to use instead of loading ``config.data`` (tests, walk-forward folds).

    >>> import gymnasium as gym
    >>> import numpy as np
    >>> import envs  # registers rlportfolio/Portfolio-v0
    >>> env = gym.make("rlportfolio/Portfolio-v0", config={"cost_bps": 10})  # the built-in 4-asset market
    >>> observation, info = env.reset(seed=0)
    >>> observation.shape, env.action_space
    ((88,), Box(-1.0, 1.0, (4,), float32))
    >>> _, reward, terminated, truncated, info = env.step(np.zeros(4, dtype=np.float32))  # softmax(0): equal weights
    >>> info["target_weights"], info["turnover"], round(info["wealth"], 6)
    (array([0.25, 0.25, 0.25, 0.25]), 0.0, 0.976176)
    >>> _, _, _, _, info = env.step(np.array([1, -1, -1, -1], dtype=np.float32))  # into the first asset: costs
    >>> round(info["turnover"], 4), round(info["cost"], 6)
    (1.4788, 0.001479)

    Each step is O(1) numpy on preallocated buffers; the returned observation is a fresh copy (RLlib keeps references).
    """

    metadata = {"render_modes": []}

    def __init__(
        self, config: EnvConfig | Mapping[str, Any] | None = None, *, market: MarketData | None = None
    ) -> None:
        """
        :param config: an ``EnvConfig`` or its fields as a dict (RLlib passes its ``env_config`` here).
        :param market: use this market instead of loading ``config.data`` (tests, walk-forward folds).
        """
        self.config: EnvConfig = parse_config(EnvConfig, config, where="env_config")
        cfg = self.config
        warmup = cfg.warmup_days
        self.market = market if market is not None else load_market(cfg.data, min_rows=warmup + 4)
        self.splits: dict[str, Split] = split_market(
            self.market, train_end=cfg.data.train_end, validation_end=cfg.data.validation_end, warmup_days=warmup
        )
        self.split = self.splits[cfg.split]
        self.assets = self.market.assets
        n_assets = self.market.n_assets

        extras_names = tuple(cfg.data.extra_columns) if cfg.observe_extras else ()
        self.extra_names = extras_names
        # The regime model comes from the data this env was configured with, never from a path it plays.
        needs_model = cfg.observe_regimes or cfg.base_needs_regimes
        self.regime_model = resolve_regime_model(cfg, self.market, self.splits["train"]) if needs_model else None
        self.base = None if cfg.policy.base == "none" else ResidualBase(cfg, self.assets, self.regime_model)
        # Training paths (train_paths): the data's split, or a fresh path per episode of a law or a bootstrap.
        paths = path_source(cfg, self.market, self.splits, given_market=market is not None, base=self.base)
        self.path_kind, self._law, self._bootstrap = paths.kind, paths.law, paths.bootstrap
        if self.path_kind != "split":
            self._path_dates = self.market.dates[: warmup + cfg.episode_days + 1]
            self._path_source = f"{self.market.source} {self.path_kind} path"
        # Decision days t = first-1 .. last-1 earn the returns of days first .. last (every return in one split).
        self._first_decision = self.split.first - 1
        self._n_steps = self.split.n_days if self.path_kind == "split" else cfg.episode_days
        if cfg.episode_days is not None and cfg.episode_days > self._n_steps:
            raise ConfigError(
                f"env_config.episode_days: {cfg.episode_days} exceeds the {self._n_steps} trading days of the "
                f"'{cfg.split}' split"
            )
        self._load_prices(self.market)  # features and relatives of every asset; a sampled episode gathers its own
        n_regimes = self.regime_model.n_regimes if cfg.observe_regimes else 0
        sample = cfg.universe.sample_assets if cfg.split == "train" else None
        layout = AssetLayout.of_env(cfg, n_regimes)
        self.sampler = None if sample is None else AssetSampler(layout, n_assets, sample, self.market.source)
        self._subset = None if sample is None else np.arange(sample)  # the episode's assets; drawn at reset
        self._columns = None if sample is None else self.sampler.columns(self._subset)
        n_assets = sample or n_assets  # K: the assets an episode trades
        obs_size = observation_size(n_assets, cfg.window_days, len(extras_names), n_regimes, self.base is not None)
        self._n_features = obs_size - n_assets
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(obs_size,), dtype=np.float32)
        self.action_map = ActionMap.from_config(cfg, n_assets)
        self.grid = self.action_map.grid
        self.action_space = self.action_map.space()

        self._cost_rate = cfg.cost_bps / 10_000.0
        self._weights = np.full(n_assets, 1.0 / n_assets)
        self._scratch = np.empty(n_assets)
        self._obs = np.empty(obs_size, dtype=np.float32)
        self._step_index = 0
        self._start = 0
        self._steps_taken = 0
        self._wealth = 1.0
        self._sharpe_a = 0.0
        self._sharpe_b = 0.0

    # -- gymnasium API -------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        paths = self.draw_paths([self.np_random])
        if paths is not None:
            self._load_prices(MarketData(self._path_dates, paths[0], self.assets, source=self._path_source))
        self._start = 0 if paths is not None else self.draw_start(self.np_random)
        if self.sampler is not None:  # after the path and the start, as PortfolioVectorEnv draws them
            self._subset = self.sampler.draw(self.np_random)
            self._columns = self.sampler.columns(self._subset)
        self._step_index = self._start
        self._steps_taken = 0
        self._wealth = 1.0
        self._sharpe_a = 0.0
        self._sharpe_b = 0.0
        self._weights.fill(1.0 / self._weights.shape[0])
        return self._observation(), {"wealth": 1.0, "weights": self._weights.copy(), "day": self.day}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        return self.step_weights(self.action_to_weights(action))

    # -- project API ---------------------------------------------------------------------------------------------

    def action_to_weights(self, action: Any) -> np.ndarray:
        """Target weights for an action (a view of an internal buffer: copy it to keep it)."""
        if self.base is None:
            return self.action_map(action, self._weights)
        return self.action_map(action, self._weights, self.base_weights)

    @property
    def base_weights(self) -> np.ndarray | None:
        """The residual base's weights today as the action tilts them (the observed ones), or ``None``."""
        if self.base is None:
            return None
        return tilted_base(self._feature_row()[-self._weights.shape[0] :])

    def step_weights(self, target: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Rebalance to ``target`` weights (``(K,)``, non-negative, sum 1) and advance one day."""
        if self._step_index >= self._n_steps:
            raise RuntimeError("step() called after the episode ended; call reset()")
        log_growth, turnover, cost = rebalance(
            self._weights, target, self._day_relatives(self._step_index), self._cost_rate, self._scratch
        )
        growth = math.exp(log_growth)
        self._wealth *= growth
        self._step_index += 1
        self._steps_taken += 1
        terminated = self._step_index >= self._n_steps
        episode_days = self.config.episode_days
        truncated = not terminated and episode_days is not None and self._steps_taken >= episode_days
        info = {
            "wealth": self._wealth,
            "weights": self._weights.copy(),
            "target_weights": np.array(target, dtype=np.float64),
            "turnover": turnover,
            "cost": cost,
            "log_growth": log_growth,
            "net_return": growth - 1.0,
            "day": self.day,
        }
        return self._observation(), self._reward(log_growth, growth - 1.0), terminated, truncated, info

    @property
    def day(self) -> int:
        """Index (into ``market.dates``) of the current decision day."""
        return self._first_decision + self._step_index

    @property
    def episode_assets(self) -> tuple[str, ...]:
        """The assets this episode trades, in observation order: ``assets``, or the ``K`` drawn at reset."""
        return self.assets if self._subset is None else tuple(self.assets[i] for i in self._subset)

    @property
    def weights(self) -> np.ndarray:
        """Weights held now, after the last day's drift (read-only view)."""
        view = self._weights.view()
        view.flags.writeable = False
        return view

    def history(self) -> np.ndarray:
        """Closes ``(t+1, K)`` up to and including the current decision day: all a causal strategy may see."""
        view = self.market.closes[: self.day + 1]
        view.flags.writeable = False
        return view

    @property
    def n_steps(self) -> int:
        """Trading days in the split (the length of a full deterministic pass)."""
        return self._n_steps

    # -- what a reset draws (PortfolioVectorEnv draws the same for each of its sub-environments) -------------------

    def draw_paths(self, rngs: list[np.random.Generator]) -> np.ndarray | None:
        """``(P, D, K)`` closes of one fresh training path per generator (the law's or a bootstrap of train's), or
        ``None`` when episodes play the data's split. Each path uses its own generator only, as ``reset`` does."""
        if self._law is not None:
            return simulate_paths(self._law, len(self._path_dates), rngs)[0]
        if self._bootstrap is not None:
            return np.stack([self._bootstrap_closes(rng) for rng in rngs])
        return None

    def draw_start(self, rng: np.random.Generator) -> int:
        """The first step of an episode on the data's split: uniform with ``random_start``, else 0."""
        if not self.config.random_start:
            return 0
        return int(rng.integers(0, self._n_steps - (self.config.episode_days or 1) + 1))

    def path_arrays(self, closes: np.ndarray, extras: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """Features ``(..., S+1, F)``, price relatives ``(..., S, K)`` and costless equal-weight log growth
        ``(..., S)`` of the ``S`` steps an episode plays on ``closes`` (``(..., D, K)``; leading dimensions: paths)."""
        cfg = self.config
        features = compute_features(
            closes,
            cfg.window_days,
            cfg.vol_window_days,
            extras,
            cfg.log_volatility,
            self.regime_model if cfg.observe_regimes else None,
            cfg.regimes.window_days,
        )
        first, last = self._first_decision + 1, self._first_decision + self._n_steps
        if self.base is not None:  # the base's weights at each decision day, observed after the features
            features = np.concatenate([features, self.base.targets(closes, first - 1)], axis=-1)
        features = np.ascontiguousarray(features[..., first - 1 : last + 1, :])  # the state after the last return too
        relatives = np.ascontiguousarray(closes[..., first : last + 1, :] / closes[..., first - 1 : last, :])
        # Log growth of the equal-weight portfolio, rebalanced daily without costs: the excess reward's benchmark.
        return features, relatives, np.log(relatives.mean(axis=-1))

    @property
    def split_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``path_arrays`` of the episode loaded now (the data's split until a training path is drawn)."""
        return self._features, self._relatives, self._benchmark_log_growth

    @property
    def first_decision(self) -> int:
        """Index into the market's dates of step 0's decision day."""
        return self._first_decision

    # -- internals -----------------------------------------------------------------------------------------------

    def _bootstrap_closes(self, rng: np.random.Generator) -> np.ndarray:
        n_days = len(self._path_dates) - 1
        return bootstrap_closes(self._bootstrap, n_days, self.config.bootstrap_block_days, rng)

    @property
    def law(self) -> MarketParams | None:
        """The synthetic law episodes are drawn from, or ``None`` when they play the data's train split."""
        return self._law

    @property
    def trains_on_law(self) -> bool:
        """True when every episode plays a fresh path of the market's true law (validation then plays fresh law paths
        too); ``fitted`` and ``bootstrap`` paths validate on the data's own validation split."""
        return self.path_kind == "law"

    def _load_prices(self, market: MarketData) -> None:
        """Features, price relatives and equal-weight growth of the split's days (the only allocation; at reset)."""
        self.market = market
        extras = np.column_stack([market.extras[n] for n in self.extra_names]) if self.extra_names else None
        self._features, self._relatives, self._benchmark_log_growth = self.path_arrays(market.closes, extras)
        if not np.isfinite(self._features).all():
            raise DataError(f"{market.source}: non-finite features in the '{self.config.split}' split")

    def _feature_row(self) -> np.ndarray:
        """Today's features (the sampled assets' columns when sampling), before the weights held."""
        row = self._features[self._step_index]
        return row if self._columns is None else self.sampler.gather(row, self._columns)

    def _day_relatives(self, step: int) -> np.ndarray:
        return self._relatives[step] if self._subset is None else self._relatives[step, self._subset]

    def _benchmark(self, step: int) -> float:
        """Costless equal weight's log growth over the assets traded (the excess reward's benchmark)."""
        if self._subset is None:
            return self._benchmark_log_growth[step]
        return math.log(self._day_relatives(step).mean())

    def _observation(self) -> np.ndarray:
        obs = self._obs
        obs[: self._n_features] = self._feature_row()
        obs[self._n_features :] = self._weights
        return obs.copy()

    def _reward(self, log_growth: float, net_return: float) -> float:
        cfg = self.config
        if cfg.reward == "log_growth":
            return cfg.reward_scale * log_growth
        if cfg.reward == "excess_log_growth":
            return cfg.reward_scale * (log_growth - self._benchmark(self._step_index - 1))
        if cfg.reward == "mean_variance":
            return cfg.reward_scale * (net_return - 0.5 * cfg.risk_aversion * net_return * net_return)
        # Differential Sharpe ratio (Moody & Saffell 2001): the first-order change of an exponential moving
        # Sharpe ratio when this step's return arrives.
        a, b, eta = self._sharpe_a, self._sharpe_b, cfg.sharpe_eta
        delta_a, delta_b = net_return - a, net_return * net_return - b
        variance = b - a * a
        reward = (b * delta_a - 0.5 * a * delta_b) / variance**1.5 if variance > 1e-12 else 0.0
        self._sharpe_a, self._sharpe_b = a + eta * delta_a, b + eta * delta_b
        return cfg.reward_scale * reward
