"""Action adapters: from an agent's action to long-only portfolio weights that sum to 1.

Continuous actions live in ``[-1, 1]^K`` (bounded, as SAC's squashed Gaussian needs) and map to weights by a
softmax of ``scale * action``, by clip-and-normalise, or relative to the weights held
(``softmax_delta``: ``softmax(log(held + 1e-4) + scale * action)``, so the zero action means "hold" and exploration
noise means small trades rather than a new random portfolio every day, which costs would punish). Discrete actions index a fixed grid on the simplex, so a
DQN agent can hold any mix of every asset at the grid's resolution, not just one asset at a time.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def simplex_grid(n_assets: int, steps: int) -> np.ndarray:
    """All weight vectors whose entries are multiples of ``1/steps``.

    :returns: ``(C(steps + K - 1, K - 1), K)`` array; 4 assets at 25% steps give 35 rows.
    """
    rows = []
    # Stars and bars: choose K-1 bar positions among steps + K - 1 slots.
    for bars in itertools.combinations(range(steps + n_assets - 1), n_assets - 1):
        edges = (-1,) + bars + (steps + n_assets - 1,)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(n_assets)])
    return np.asarray(rows, dtype=np.float64) / steps


def grid_size(n_assets: int, steps: int) -> int:
    return math.comb(steps + n_assets - 1, n_assets - 1)


def softmax_weights(action: np.ndarray, scale: float, out: np.ndarray) -> np.ndarray:
    """``out = softmax(scale * clip(action, -1, 1))``, computed in place."""
    np.clip(action, -1.0, 1.0, out=out)
    out *= scale
    out -= out.max()
    np.exp(out, out=out)
    out /= out.sum()
    return out


def softmax_delta_weights(action: np.ndarray, held: np.ndarray, scale: float, out: np.ndarray) -> np.ndarray:
    """``out = softmax(log(held + 1e-4) + scale * clip(action, -1, 1))``, computed in place."""
    np.clip(action, -1.0, 1.0, out=out)
    out *= scale
    out += np.log(held + HOLD_FLOOR)
    out -= out.max()
    np.exp(out, out=out)
    out /= out.sum()
    return out


HOLD_FLOOR = 1e-4  # keeps log(held) finite, so an asset at zero weight can be bought back


def clip_weights(action: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = clip(action, 0, 1) / sum``; an all-zero action means equal weights."""
    np.clip(action, 0.0, 1.0, out=out)
    total = out.sum()
    if total <= 1e-12:
        out.fill(1.0 / out.shape[0])
    else:
        out /= total
    return out


class ActionMap:
    """Action -> weights for one env configuration; the env, validation, export and serving all use this.

    :param mode: ``"continuous"`` or ``"discrete"``.
    :param n_assets: ``K``.
    :param grid_steps: discrete resolution (weights in multiples of ``1/grid_steps``).
    :param continuous_map: ``"softmax"``, ``"softmax_delta"`` or ``"clip"``.
    :param softmax_scale: logits are ``softmax_scale * action``.
    """

    def __init__(
        self,
        mode: str,
        n_assets: int,
        grid_steps: int = 4,
        continuous_map: str = "softmax",
        softmax_scale: float = 3.0,
        discrete_hold: bool = False,
        trade_rate: float = 1.0,
    ) -> None:
        self.mode = mode
        self.n_assets = n_assets
        self.continuous_map = continuous_map
        self.softmax_scale = softmax_scale
        self.grid = simplex_grid(n_assets, grid_steps) if mode == "discrete" else None
        # With a hold action, discrete action 0 keeps the weights held and action i >= 1 is grid row i - 1: the
        # discrete counterpart of softmax_delta, so a DQN agent can stay put without paying to re-hit a grid point.
        self.hold = bool(discrete_hold) and self.grid is not None
        # Partial adjustment (Garleanu & Pedersen 2013): trade only trade_rate of the way from the weights held to
        # the action's target, so a jittery target costs little turnover and a steady one is reached geometrically.
        self.trade_rate = float(trade_rate)
        self._out = np.empty(n_assets)
        self._partial = np.empty(n_assets)

    @classmethod
    def from_config(cls, config, n_assets: int) -> ActionMap:
        """From an ``envs.config.EnvConfig``."""
        return cls(
            config.action_mode,
            n_assets,
            config.grid_steps,
            config.continuous_map,
            config.softmax_scale,
            config.discrete_hold,
            config.trade_rate,
        )

    def space(self):
        import gymnasium as gym

        if self.grid is not None:
            return gym.spaces.Discrete(len(self.grid) + int(self.hold))
        return gym.spaces.Box(-1.0, 1.0, shape=(self.n_assets,), dtype=np.float32)

    def __call__(self, action, held: np.ndarray | None = None) -> np.ndarray:
        """Weights for ``action`` given the weights ``held`` now (needed by ``softmax_delta``, the hold action and
        ``trade_rate < 1``).

        Returns a view of an internal buffer or of the grid: copy it to keep it.
        """
        target = self._target(action, held)
        if self.trade_rate >= 1.0:
            return target
        if held is None:
            raise ValueError("a trade_rate below 1 needs the weights held")
        np.subtract(target, held, out=self._partial)
        self._partial *= self.trade_rate
        self._partial += held
        return self._partial

    def _target(self, action, held: np.ndarray | None) -> np.ndarray:
        if self.grid is not None:
            index = int(action)
            size = len(self.grid) + int(self.hold)
            if not 0 <= index < size:
                raise ValueError(f"action {index} is outside Discrete({size})")
            if not self.hold:
                return self.grid[index]
            if index == 0:
                if held is None:
                    raise ValueError("the hold action needs the weights held")
                self._out[:] = held
                return self._out
            return self.grid[index - 1]
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self._out.shape or not np.isfinite(action).all():
            raise ValueError(f"action must be {self.n_assets} finite numbers, got {action!r}")
        if self.continuous_map == "softmax":
            return softmax_weights(action, self.softmax_scale, self._out)
        if self.continuous_map == "softmax_delta":
            if held is None:
                raise ValueError("softmax_delta actions need the weights held")
            return softmax_delta_weights(action, held, self.softmax_scale, self._out)
        return clip_weights(action, self._out)

    def batch(self, actions, held: np.ndarray) -> np.ndarray:
        """``(N, K)`` weights for ``N`` actions (``(N,)`` indices or ``(N, K)`` numbers) given the ``(N, K)``
        weights held: row ``i`` equals ``self(actions[i], held[i])`` (a new array)."""
        n_envs = held.shape[0]
        if self.grid is not None:
            index = np.asarray(actions).reshape(-1).astype(np.int64)
            size = len(self.grid) + int(self.hold)
            if index.shape != (n_envs,) or ((index < 0) | (index >= size)).any():
                raise ValueError(f"actions must be {n_envs} indices in Discrete({size}), got {actions!r}")
            if self.hold:
                target = np.where((index == 0)[:, None], held, self.grid[np.maximum(index - 1, 0)])
            else:
                target = self.grid[index]
        else:
            action = np.asarray(actions, dtype=np.float64)
            if action.shape != held.shape or not np.isfinite(action).all():
                raise ValueError(f"actions must be ({n_envs}, {self.n_assets}) finite numbers, got {actions!r}")
            if self.continuous_map == "clip":
                target = np.clip(action, 0.0, 1.0)
                total = target.sum(axis=1, keepdims=True)
                empty = total[:, 0] <= 1e-12
                target = np.divide(target, total, out=np.zeros_like(target), where=~empty[:, None])
                target[empty] = 1.0 / self.n_assets
            else:
                target = np.clip(action, -1.0, 1.0)
                target *= self.softmax_scale
                if self.continuous_map == "softmax_delta":
                    target += np.log(held + HOLD_FLOOR)
                target -= target.max(axis=1, keepdims=True)
                np.exp(target, out=target)
                target /= target.sum(axis=1, keepdims=True)
        if self.trade_rate >= 1.0:
            return np.array(target, dtype=np.float64)
        return held + self.trade_rate * (target - held)
