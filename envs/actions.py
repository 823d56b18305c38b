"""Action adapters: from an agent's action to long-only portfolio weights that sum to 1.

Continuous actions live in ``[-1, 1]^K`` (bounded, as SAC's squashed Gaussian needs) and map to weights by a
softmax of ``scale * action`` or by clip-and-normalise. Discrete actions index a fixed grid on the simplex, so a
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


def clip_weights(action: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = clip(action, 0, 1) / sum``; an all-zero action means equal weights."""
    np.clip(action, 0.0, 1.0, out=out)
    total = out.sum()
    if total <= 1e-12:
        out.fill(1.0 / out.shape[0])
    else:
        out /= total
    return out


def weights_to_action(weights: np.ndarray, mode: str, scale: float) -> np.ndarray:
    """An action that maps back to (approximately, for softmax) ``weights``; for tests and warm starts."""
    if mode == "clip":
        return np.asarray(weights, dtype=np.float32)
    logits = np.log(np.clip(weights, 1e-6, None))
    logits -= logits.mean()
    return np.clip(logits / scale, -1.0, 1.0).astype(np.float32)
