"""Action adapters: from an agent's action to long-only portfolio weights that sum to 1.

Continuous actions live in ``[-1, 1]^K`` (bounded, as SAC's squashed Gaussian needs) and map to weights by a
softmax of ``scale * action``, by clip-and-normalise, or relative to the weights held
(``softmax_delta``: ``softmax(log(held + 1e-4) + scale * action)``, so the zero action means "hold" and exploration
noise means small trades rather than a new random portfolio every day, which costs would punish). Discrete actions index a fixed grid on the simplex, so a
DQN agent can hold any mix of every asset at the grid's resolution, not just one asset at a time.

A residual map (``residual=True``, ``envs.config.PolicyConfig``) tilts a classical base's weights instead:
``w ∝ base ⊙ exp(tilt_scale · a)``, so the zero action is the base exactly; ``tilt_budget`` shrinks a tilt that
moves further than that L1 distance from the base back towards it. Discrete residual actions are ``2K + 1`` tilts:
0 follows the base, ``1..K`` tilt asset ``k`` up (``a = e_k``), ``K+1..2K`` tilt it down (``a = -e_k``).

Factored discrete actions (``discrete_actions: factored``, for branching DQN: Tavakoli, Pardo & Kormushev 2018) give
every asset its own level ``l_k`` in ``0..L-1``, ``MultiDiscrete([L] * K)``: ``K * L`` choices a network scores
instead of a grid of ``C(steps + K - 1, K - 1)`` (8,855 at 20 assets). A level is a tilt ``2 l / (L - 1) - 1`` in
``[-1, 1]``, i.e. the continuous action on a grid of ``L`` values per asset, mapped as continuous actions are:
``softmax(softmax_scale * tilt)`` without a base, the base's tilt with one (the middle level everywhere is equal
weight, or the base). Why a softmax and not ``w ∝ l``: one asset's level step multiplies its weight relative to every
other asset by the same factor ``exp(2 softmax_scale / (L - 1))`` whatever the other branches chose, so each
branch's effect is close to separable, which is what a per-branch Q decomposition assumes; ``w ∝ l`` makes the effect
of one branch depend on the sum of the others and jumps at all-zero (equal weight) to all-in when one asset moves
up one level. Weights are never exactly zero: the lowest level sits ``exp(-2 softmax_scale)`` (0.25% at the default
3) below the highest.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from core.errors import ConfigError

MAX_GRID_ACTIONS = 10_000  # 20 assets at 4 steps: 8,855 (DQN sampled 1/15 of its 4-asset speed); 30: 40,920


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


def tilt_vectors(n_assets: int) -> np.ndarray:
    """``(2K + 1, K)`` discrete residual actions as tilt vectors: none, each asset up, each asset down."""
    eye = np.eye(n_assets)
    return np.vstack([np.zeros((1, n_assets)), eye, -eye])


def level_tilts(levels, n_levels: int, shape: tuple[int, ...]) -> np.ndarray:
    """Factored actions -> tilts: ``levels`` of ``shape`` (whole numbers in ``0..n_levels-1``) as
    ``2 l / (n_levels - 1) - 1`` in ``[-1, 1]`` (a new float array; the middle level is 0 when ``n_levels`` is odd).

    :raises ValueError: wrong shape, or a level that is not a whole number in range (naming the space)."""
    values = np.asarray(levels)
    whole = values.shape == shape
    if whole and values.dtype.kind not in "iu":  # floats holding whole numbers (JSON) pass; text and NaN do not
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            whole = False
        else:
            whole = bool(np.isfinite(values).all() and (values == np.round(values)).all())
    if not whole or ((values < 0) | (values >= n_levels)).any():
        space = f"MultiDiscrete([{n_levels}] * {shape[-1]})"
        raise ValueError(f"actions must be {shape} levels in 0..{n_levels - 1} of {space}, got {levels!r}")
    return values * (2.0 / (n_levels - 1)) - 1.0


def tilt_weights(tilts: np.ndarray, base: np.ndarray, scale: float, budget: float | None = None) -> np.ndarray:
    """``(..., K)`` weights ``∝ base ⊙ exp(scale · clip(tilts, -1, 1))``, each row at most ``budget`` (L1) from its
    base (a row further away is moved back along the segment to the base, which stays on the simplex). A zero
    tilt returns the base itself (normalised)."""
    base = np.asarray(base, dtype=np.float64)
    logits = scale * np.clip(np.asarray(tilts, dtype=np.float64), -1.0, 1.0)
    logits -= logits.max(axis=-1, keepdims=True)
    weights = base * np.exp(logits)
    weights /= weights.sum(axis=-1, keepdims=True)
    if budget is not None:
        distance = np.abs(weights - base).sum(axis=-1, keepdims=True)
        shrink = np.minimum(1.0, budget / np.maximum(distance, 1e-300))
        weights = base + shrink * (weights - base)
    return weights


class ActionMap:
    """Action -> weights for one env configuration; the env, validation, export and serving all use this.

    :param mode: ``"continuous"`` or ``"discrete"``.
    :param n_assets: ``K``.
    :param grid_steps: discrete resolution (weights in multiples of ``1/grid_steps``).
    :param continuous_map: ``"softmax"``, ``"softmax_delta"`` or ``"clip"``.
    :param softmax_scale: logits are ``softmax_scale * action``.
    :param discrete_actions: discrete only: ``"grid"`` (one index into the simplex grid, or the ``2K + 1`` tilts
        with a base) or ``"factored"`` (one level per asset, ``MultiDiscrete([factored_levels] * K)``).
    :param factored_levels: ``L``, levels per asset of a factored action.
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
        residual: bool = False,
        tilt_scale: float = 1.0,
        tilt_budget: float | None = None,
        discrete_actions: str = "grid",
        factored_levels: int = 5,
    ) -> None:
        self.mode = mode
        # Factored: each asset's level becomes a tilt in [-1, 1] that the softmax (or the base's tilt) maps as a
        # continuous action; the grid and the 2K + 1 residual tilts are not built.
        self.levels = int(factored_levels) if mode == "discrete" and discrete_actions == "factored" else None
        if self.levels is not None and self.levels < 2:
            raise ValueError(f"factored_levels: need at least 2 levels per asset, got {factored_levels}")
        # Residual: the action tilts a base's weights (passed to every call), which the zero action returns.
        self.residual = bool(residual)
        self.tilt_scale = float(tilt_scale)
        self.tilt_budget = tilt_budget
        grid = mode == "discrete" and self.levels is None
        self.tilts = tilt_vectors(n_assets) if self.residual and grid else None
        self.n_assets = n_assets
        self.continuous_map = "softmax" if self.levels is not None else continuous_map
        self.softmax_scale = softmax_scale
        if grid and not self.residual and grid_size(n_assets, grid_steps) > MAX_GRID_ACTIONS:
            raise ConfigError(
                f"grid_steps: the simplex grid of {n_assets} assets at {grid_steps} steps has "
                f"{grid_size(n_assets, grid_steps):,} actions (at most {MAX_GRID_ACTIONS:,}); set discrete_actions: "
                "factored (one level per asset), a policy.base (2K + 1 tilts) or fewer grid_steps"
            )
        self.grid = simplex_grid(n_assets, grid_steps) if grid and not self.residual else None
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
            residual=config.policy.base != "none",
            tilt_scale=config.policy.tilt_scale,
            tilt_budget=config.policy.tilt_budget,
            discrete_actions=config.discrete_actions,
            factored_levels=config.factored_levels,
        )

    def space(self):
        import gymnasium as gym

        if self.levels is not None:
            return gym.spaces.MultiDiscrete([self.levels] * self.n_assets)
        if self.tilts is not None:
            return gym.spaces.Discrete(len(self.tilts))
        if self.grid is not None:
            return gym.spaces.Discrete(len(self.grid) + int(self.hold))
        return gym.spaces.Box(-1.0, 1.0, shape=(self.n_assets,), dtype=np.float32)

    def __call__(self, action, held: np.ndarray | None = None, base: np.ndarray | None = None) -> np.ndarray:
        """Weights for ``action`` given the weights ``held`` now (needed by ``softmax_delta``, the hold action and
        ``trade_rate < 1``) and, for a residual map, the base's weights today.

        Returns a view of an internal buffer or of the grid: copy it to keep it.
        """
        if self.levels is not None:
            action = level_tilts(action, self.levels, (self.n_assets,))
        target = self._residual(action, base) if self.residual else self._target(action, held)
        if self.trade_rate >= 1.0:
            return target
        if held is None:
            raise ValueError("a trade_rate below 1 needs the weights held")
        np.subtract(target, held, out=self._partial)
        self._partial *= self.trade_rate
        self._partial += held
        return self._partial

    def _residual(self, action, base: np.ndarray | None) -> np.ndarray:
        if base is None:
            raise ValueError("a residual action tilts the base's weights, and none were given")
        if self.tilts is not None:
            index = int(action)
            if not 0 <= index < len(self.tilts):
                raise ValueError(f"action {index} is outside Discrete({len(self.tilts)})")
            tilt = self.tilts[index]
        else:
            tilt = np.asarray(action, dtype=np.float64)
            if tilt.shape != self._out.shape or not np.isfinite(tilt).all():
                raise ValueError(f"action must be {self.n_assets} finite numbers, got {action!r}")
        self._out[:] = tilt_weights(tilt, base, self.tilt_scale, self.tilt_budget)
        return self._out

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

    def batch(self, actions, held: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """``(N, K)`` weights for ``N`` actions (``(N,)`` indices or ``(N, K)`` numbers) given the ``(N, K)``
        weights held (and bases, for a residual map): row ``i`` equals ``self(actions[i], held[i], base[i])`` (a new
        array)."""
        n_envs = held.shape[0]
        if self.levels is not None:
            actions = level_tilts(actions, self.levels, (n_envs, self.n_assets))
        if self.residual:
            if base is None or np.shape(base) != held.shape:
                raise ValueError(f"a residual action tilts the base's weights: give ({n_envs}, {self.n_assets}) bases")
            if self.tilts is not None:
                index = np.asarray(actions).reshape(-1).astype(np.int64)
                if index.shape != (n_envs,) or ((index < 0) | (index >= len(self.tilts))).any():
                    raise ValueError(
                        f"actions must be {n_envs} indices in Discrete({len(self.tilts)}), got {actions!r}"
                    )
                tilt = self.tilts[index]
            else:
                tilt = np.asarray(actions, dtype=np.float64)
                if tilt.shape != held.shape or not np.isfinite(tilt).all():
                    raise ValueError(f"actions must be ({n_envs}, {self.n_assets}) finite numbers, got {actions!r}")
            target = tilt_weights(tilt, base, self.tilt_scale, self.tilt_budget)
        elif self.grid is not None:
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
