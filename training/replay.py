"""A transition replay buffer in flat numpy arrays, for DQN and SAC (``training.replay_algorithms``).

Why ours and not RLlib's: RLlib's new-stack replay buffers store episodes and sample one transition at a time,
building a one-step ``SingleAgentEpisode`` per sampled row that the learner connector then takes apart again. On
2 CPUs that was about 70% of a SAC iteration (sampling 7.3 s, learner connector 3.8 s and adding 2.0 s of 20 s
profiled, against 3.5 s of gradient work). Here a sampled batch is one fancy-indexing per column.

Rows: the row for step ``t`` holds ``obs[t]``, ``actions[t]``, the discounted sum of the next
``h = min(n, steps left in the episode)`` rewards, ``obs[t + h]`` as ``new_obs``, ``terminateds`` (the episode
terminated at ``t + h``) and ``n_step = h``, so the learner bootstraps with ``gamma ** h``. A truncated episode's
last rows bootstrap from its final observation. With ``n_step: 1`` this is exactly what RLlib's
``EpisodeReplayBuffer`` samples. For ``n > 1`` two things differ, on purpose: RLlib writes the configured ``n`` into
``n_step`` even for rows with fewer rewards left (bootstrapping an episode's tail with ``gamma ** n``), and it samples
the tail of an unfinished chunk with fewer than ``n`` rewards; here each row discounts by the steps it summed, and
the last ``n - 1`` steps of an unfinished episode wait for its next chunk (one per env per sample call). Sampling is
uniform (``weights`` are ones): no prioritisation.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import ConfigError


@dataclass
class _Pending:
    """Steps of an unfinished episode whose n-step targets need rewards not seen yet."""

    obs: np.ndarray  # (k + 1, ...): k steps and the observation after the last
    actions: np.ndarray  # (k, ...)
    rewards: np.ndarray  # (k,)


def check_n_step(n_step: object) -> int:
    """``n_step`` as the array buffer takes it: one whole number >= 1 (RLlib's random ranges are not supported)."""
    if isinstance(n_step, bool) or not isinstance(n_step, int | np.integer) or n_step < 1:
        raise ConfigError(f"hyperparameters.n_step: replay 'array' takes one whole number >= 1, got {n_step!r}")
    return int(n_step)


class TransitionReplay:
    """Ring buffer of n-step transitions; ``capacity`` rows, oldest overwritten first."""

    def __init__(self, capacity: int, *, n_step: int = 1, gamma: float = 0.99, seed: int | None = None) -> None:
        if capacity < 1:
            raise ConfigError(f"replay_buffer_config.capacity: must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.n_step = check_n_step(n_step)
        self.gamma = float(gamma)
        self._rng = np.random.default_rng(seed)
        self._columns: dict[str, np.ndarray] = {}
        self._next = 0  # row the next transition goes to
        self._size = 0
        self._pending: dict[Hashable, _Pending] = {}
        self.added = 0  # transitions stored over the buffer's life

    def __len__(self) -> int:
        return self._size

    def add_episodes(self, episodes: Iterable[Any]) -> None:
        """Store RLlib ``SingleAgentEpisode`` chunks (what an env runner's ``sample()`` returns)."""
        for episode in episodes:
            if len(episode) == 0:
                continue
            self.add_chunk(
                episode.id_,
                obs=np.asarray(episode.get_observations()),
                actions=np.asarray(episode.get_actions()),
                rewards=np.asarray(episode.get_rewards(), dtype=np.float32),
                terminated=bool(episode.is_terminated),
                done=bool(episode.is_done),
            )

    def add_chunk(
        self, key: Hashable, *, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: bool, done: bool
    ) -> None:
        """Store one chunk of episode ``key``: ``len(actions)`` steps and ``len(actions) + 1`` observations.

        ``done`` ends the episode (``terminated`` says whether by termination, else truncation); a chunk of an
        unfinished episode continues from the observation its previous chunk ended with.
        """
        steps = len(actions)
        if len(obs) != steps + 1 or len(rewards) != steps:
            raise ValueError(
                f"episode chunk {key!r}: {len(obs)} observations, {steps} actions and {len(rewards)} rewards; "
                "need one more observation than actions and one reward per action"
            )
        terminated = terminated and done
        pending = self._pending.pop(key, None)
        if pending is not None:
            obs = np.concatenate([pending.obs[:-1], obs])
            actions = np.concatenate([pending.actions, actions])
            rewards = np.concatenate([pending.rewards, rewards])
            steps = len(actions)
        n = self.n_step
        ready = steps if done else max(steps - n + 1, 0)  # rows whose n rewards (or the episode's end) are known
        if not done and ready < steps:
            keep = slice(ready, None)
            self._pending[key] = _Pending(obs=obs[ready:], actions=actions[keep], rewards=rewards[keep])
        if ready == 0:
            return
        t = np.arange(ready)
        horizon = np.minimum(n, steps - t)
        returns = np.zeros(ready, dtype=np.float64)
        for k in range(n):
            inside = k < horizon
            returns[inside] += self.gamma**k * rewards[t[inside] + k]
        self._store(
            obs=obs[:ready],
            new_obs=obs[t + horizon],
            actions=actions[:ready],
            rewards=returns.astype(np.float32),
            terminateds=(t + horizon == steps) & terminated,
            n_step=horizon.astype(np.int64),
        )

    def _store(self, **columns: np.ndarray) -> None:
        rows = len(columns["rewards"])
        self.added += rows
        if not self._columns:
            self._columns = {
                name: np.zeros((self.capacity, *np.shape(values)[1:]), dtype=np.asarray(values).dtype)
                for name, values in columns.items()
            }
        if rows > self.capacity:  # only the newest rows fit
            columns = {name: values[-self.capacity :] for name, values in columns.items()}
            rows = self.capacity
        at = (self._next + np.arange(rows)) % self.capacity
        for name, values in columns.items():
            self._columns[name][at] = values
        self._next = int((self._next + rows) % self.capacity)
        self._size = min(self._size + rows, self.capacity)

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """``batch_size`` rows drawn uniformly with replacement, as the columns DQN's and SAC's losses read."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        rows = self._rng.integers(0, self._size, size=batch_size)
        batch = {name: values[rows] for name, values in self._columns.items()}
        batch["weights"] = np.ones(batch_size, dtype=np.float32)
        return batch

    def pending_episodes(self) -> int:
        """Unfinished episodes holding back their last ``n_step - 1`` steps."""
        return len(self._pending)
