"""``PortfolioVectorEnv``: ``N`` copies of ``PortfolioEnv`` stepped together in a few numpy operations.

It is a gymnasium ``VectorEnv`` with the semantics of ``SyncVectorEnv`` over ``N`` ``PortfolioEnv``s (tested equal,
step for step, with the same seeds: observations, rewards, flags, costs, resets and infos with their masks) and the
same autoreset mode (``NEXT_STEP``: the step after an episode ends resets that sub-environment, ignores its action
and returns its first observation with reward 0). What differs is the cost: one step of all ``N`` portfolios is a
dozen array operations on ``(N, K)`` arrays instead of ``N`` Python steps, and the sub-environments that reset
together (with fixed-length episodes, all of them) draw their training paths and compute their features, regime
filter included, in one batched pass.

RLlib builds it through the env's vector entry point (``config.env_runners(gym_env_vectorize_mode=
"vector_entry_point")``, which ``training.algorithms`` sets): RLlib's env creator is called with ``num_envs`` in
the env config and ``envs.registration`` returns this class for it. ``gym.make_vec("rlportfolio/Portfolio-v0",
num_envs=N, vectorization_mode="vector_entry_point", config=...)`` builds it directly.

Sub-environment ``i`` draws its episodes from its own generator, seeded as ``SyncVectorEnv`` seeds its ``i``-th env
(``seed + i``), and draws exactly what ``PortfolioEnv.reset`` would with it (``PortfolioEnv.draw_paths`` and
``draw_start`` are the one implementation of both). With ``universe.sample_assets`` each sub-environment then draws
its assets (``envs.universe``, as ``PortfolioEnv.reset`` does); the universe's features are still computed once per
split or path, and each step gathers every sub-environment's columns in one ``np.take`` on precomputed indices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector.utils import batch_space

from core.errors import ConfigError
from envs.accounting import rebalance_batch
from envs.bases import tilted_base
from envs.config import EnvConfig
from envs.market import MarketData
from envs.portfolio_env import PortfolioEnv
from envs.universe import take_assets

STEP_INFO_KEYS = ("wealth", "weights", "target_weights", "turnover", "cost", "log_growth", "net_return", "day")
RESET_INFO_KEYS = ("wealth", "weights", "day")


class PortfolioVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` portfolios over one market and configuration (``PortfolioEnv``'s arguments)."""

    metadata = {"render_modes": [], "autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        config: EnvConfig | Mapping[str, Any] | None = None,
        num_envs: int = 8,
        *,
        market: MarketData | None = None,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError(f"num_envs: {num_envs!r} must be a positive integer")
        self.env = env = PortfolioEnv(config, market=market)  # the one source of spaces, paths and features
        self.config = env.config
        self.num_envs = num_envs
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.observation_space = batch_space(env.observation_space, num_envs)
        self.action_space = batch_space(env.action_space, num_envs)
        self.action_map = env.action_map

        n_assets, n_steps = env.weights.shape[0], env.n_steps  # K: the assets each episode trades
        features, relatives, benchmark = env.split_arrays
        self._shared = env.path_kind == "split"  # every episode plays the same split: one copy of its arrays
        if self._shared:
            self._features, self._relatives, self._benchmark = features, relatives, benchmark
        else:
            self._features = np.zeros((num_envs, *features.shape), dtype=features.dtype)
            self._relatives = np.ones((num_envs, *relatives.shape))
            self._benchmark = np.zeros((num_envs, *benchmark.shape))
        self._n_features = env.observation_space.shape[0] - n_assets
        self._sampler = env.sampler  # with universe.sample_assets: each sub-environment's assets and their columns
        if self._sampler is not None:
            self._assets = np.tile(np.arange(n_assets), (num_envs, 1))
            self._columns = self._sampler.columns(self._assets)
        self._n_steps = n_steps
        self._cost_rate = self.config.cost_bps / 10_000.0
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._envs = np.arange(num_envs)
        self._weights = np.full((num_envs, n_assets), 1.0 / n_assets)
        self._wealth = np.ones(num_envs)
        self._step = np.zeros(num_envs, dtype=np.int64)
        self._taken = np.zeros(num_envs, dtype=np.int64)
        self._sharpe_a = np.zeros(num_envs)
        self._sharpe_b = np.zeros(num_envs)
        self._autoreset = np.zeros(num_envs, dtype=bool)

    # -- gymnasium API -------------------------------------------------------------------------------------------

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-environment (or those in ``options["reset_mask"]``); ``seed`` as ``SyncVectorEnv``:
        ``None``, an int (``seed + i`` for sub-environment ``i``) or one seed per sub-environment."""
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset: {len(seeds)} seeds for {self.num_envs} sub-environments")
        index = self._envs
        if options and "reset_mask" in options:
            index = np.flatnonzero(np.asarray(options["reset_mask"], dtype=bool))
        for i in index:
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i] = seeding.np_random(seeds[i])[0]
        self._reset_envs(index)
        self._autoreset[index] = False
        infos: dict[str, Any] = {}
        self._add_infos(infos, index, self._reset_info(index), RESET_INFO_KEYS)
        return self._observations(), infos

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-environment whose episode goes on; reset those whose episode ended on the last step."""
        resetting = np.flatnonzero(self._autoreset)
        stepping = np.flatnonzero(~self._autoreset) if len(resetting) else self._envs
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        if len(stepping):
            acts = actions if len(resetting) == 0 else np.asarray(actions)[stepping]
            step_info = self._step_envs(stepping, acts, rewards, terminated, truncated)
            self._add_infos(infos, stepping, step_info, STEP_INFO_KEYS)
        if len(resetting):
            self._reset_envs(resetting)
            self._add_infos(infos, resetting, self._reset_info(resetting), RESET_INFO_KEYS)
        self._autoreset = terminated | truncated
        return self._observations(), rewards, terminated, truncated, infos

    @property
    def episode_assets(self) -> np.ndarray:
        """``(num_envs, K)``: each sub-environment's assets this episode, as indices into ``env.assets`` (all of
        them, in order, without ``universe.sample_assets``)."""
        if self._sampler is None:
            return np.tile(np.arange(self._weights.shape[1]), (self.num_envs, 1))
        return self._assets.copy()

    # -- internals -----------------------------------------------------------------------------------------------

    def _reset_envs(self, index: np.ndarray) -> None:
        env = self.env
        rngs = [self._rngs[i] for i in index]
        if self._shared:
            self._step[index] = [env.draw_start(rng) for rng in rngs]
        else:
            arrays = env.path_arrays(env.draw_paths(rngs))
            if len(index) == self.num_envs:  # every path at once (fixed-length episodes): the new arrays as they are
                self._features, self._relatives, self._benchmark = arrays
            else:
                self._features[index], self._relatives[index], self._benchmark[index] = arrays
            self._step[index] = 0
        if self._sampler is not None:  # after the paths and starts, as PortfolioEnv.reset draws them
            self._assets[index] = [self._sampler.draw(rng) for rng in rngs]
            self._columns[index] = self._sampler.columns(self._assets[index])
        self._taken[index] = 0
        self._wealth[index] = 1.0
        self._sharpe_a[index] = 0.0
        self._sharpe_b[index] = 0.0
        self._weights[index] = 1.0 / self._weights.shape[1]

    def _step_envs(
        self, index: np.ndarray, actions: Any, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray
    ) -> dict[str, np.ndarray]:
        held = self._weights[index]
        step = self._step[index]
        if self.action_map.residual:  # the base the action tilts: the observed one, as PortfolioEnv.base_weights
            rows = self._feature_rows(index, step)
            target = self.action_map.batch(actions, held, tilted_base(rows[:, -held.shape[1] :]))
        else:
            target = self.action_map.batch(actions, held)
        if self._sampler is None:
            relatives = self._relatives[step] if self._shared else self._relatives[index, step]
        else:
            rows = self._flat_rows(index, step, self._relatives.shape[-2])
            relatives = take_assets(self._relatives, rows, self._of_envs(self._assets, index))
        log_growth, turnover, cost = rebalance_batch(held, target, relatives, self._cost_rate)
        self._weights[index] = held
        growth = np.exp(log_growth)
        self._wealth[index] *= growth
        step += 1
        self._step[index] = step
        self._taken[index] += 1
        ended = step >= self._n_steps
        terminated[index] = ended
        if self.config.episode_days is not None:
            truncated[index] = ~ended & (self._taken[index] >= self.config.episode_days)
        rewards[index] = self._rewards(index, step, log_growth, growth - 1.0, relatives)
        return {
            "wealth": self._wealth[index],
            "weights": held,
            "target_weights": target,
            "turnover": turnover,
            "cost": cost,
            "log_growth": log_growth,
            "net_return": growth - 1.0,
            "day": self.env.first_decision + step,
        }

    def _rewards(self, index, step, log_growth: np.ndarray, net_return: np.ndarray, relatives: np.ndarray):
        cfg = self.config
        if cfg.reward == "log_growth":
            return cfg.reward_scale * log_growth
        if cfg.reward == "excess_log_growth":
            if self._sampler is not None:  # equal weight over the sampled assets (PortfolioEnv._benchmark)
                benchmark = np.log(relatives.mean(axis=1))
            else:
                benchmark = self._benchmark[step - 1] if self._shared else self._benchmark[index, step - 1]
            return cfg.reward_scale * (log_growth - benchmark)
        if cfg.reward == "mean_variance":
            return cfg.reward_scale * (net_return - 0.5 * cfg.risk_aversion * net_return * net_return)
        a, b, eta = self._sharpe_a[index], self._sharpe_b[index], cfg.sharpe_eta  # PortfolioEnv._reward's formula
        delta_a, delta_b = net_return - a, net_return * net_return - b
        variance = b - a * a
        defined = variance > 1e-12
        reward = np.zeros_like(a)
        reward[defined] = (b * delta_a - 0.5 * a * delta_b)[defined] / variance[defined] ** 1.5
        self._sharpe_a[index], self._sharpe_b[index] = a + eta * delta_a, b + eta * delta_b
        return cfg.reward_scale * reward

    def _observations(self) -> np.ndarray:
        obs = np.empty((self.num_envs, self._n_features + self._weights.shape[1]), dtype=np.float32)
        obs[:, : self._n_features] = self._feature_rows(self._envs, self._step)
        obs[:, self._n_features :] = self._weights
        return obs

    def _feature_rows(self, index: np.ndarray, step: np.ndarray) -> np.ndarray:
        """``(n, F)``: the features sub-environments ``index`` observe at ``step`` (their assets' when sampling)."""
        if self._sampler is None:
            return self._features[step] if self._shared else self._features[index, step]
        rows = self._flat_rows(index, step, self._features.shape[-2])
        return self._sampler.gather_rows(self._features, rows, self._of_envs(self._columns, index))

    def _of_envs(self, values: np.ndarray, index: np.ndarray) -> np.ndarray:
        """``values[index]``, without a copy when ``index`` is every sub-environment (the common step)."""
        return values if index is self._envs else values[index]

    def _flat_rows(self, index: np.ndarray, step: np.ndarray, per_env: int) -> np.ndarray:
        """Rows of an array of ``per_env`` rows per sub-environment, its sub-environments flattened: ``step`` when
        they share one, else ``index * per_env + step``."""
        return step if self._shared else index * per_env + step

    def _reset_info(self, index: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "wealth": self._wealth[index],
            "weights": self._weights[index],
            "day": self.env.first_decision + self._step[index],
        }

    def _add_infos(self, infos: dict[str, Any], index: np.ndarray, values: dict[str, np.ndarray], keys) -> None:
        """Vector infos as ``SyncVectorEnv`` builds them: ``infos[key][i]`` and the mask ``infos["_" + key][i]``.
        ``values`` are fresh arrays, so when every sub-environment reports (the common step) they become the infos."""
        if len(index) == self.num_envs and not infos:
            every = np.ones(self.num_envs, dtype=bool)
            for key in keys:
                infos[key], infos[f"_{key}"] = values[key], every.copy()
            return
        for key in keys:
            value = values[key]
            if key not in infos:
                infos[key] = np.zeros((self.num_envs, *value.shape[1:]), dtype=value.dtype)
                infos[f"_{key}"] = np.zeros(self.num_envs, dtype=bool)
            infos[key][index] = value
            infos[f"_{key}"][index] = True
