"""Independent checks of the growth-optimal problem (no project solver): the KKT conditions on the simplex."""

from __future__ import annotations

import numpy as np


def stationary_distribution(transition: np.ndarray) -> np.ndarray:
    """The left eigenvector of ``transition`` for eigenvalue 1, normalised (numpy's eigen-decomposition)."""
    values, vectors = np.linalg.eig(np.asarray(transition).T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    return pi / pi.sum()


def assert_growth_optimal(weights: np.ndarray, mu: np.ndarray, cov: np.ndarray, tolerance: float = 1e-7) -> None:
    """``weights`` maximise ``w.(mu + diag(cov)/2) - w'cov w/2`` on the simplex: long-only, summing to 1, the
    gradient equal on the assets held and no higher on those not held (the problem is concave, so this is the
    optimum)."""
    weights = np.asarray(weights, dtype=np.float64)
    assert weights.min() >= -1e-12 and abs(weights.sum() - 1.0) < 1e-9
    gradient = mu + np.diag(cov) / 2 - cov @ weights
    scale = np.abs(gradient).max()
    held = weights > 1e-6
    level = gradient[held].mean()
    assert np.abs(gradient[held] - level).max() <= tolerance * scale, (weights, gradient)
    assert (gradient[~held] <= level + tolerance * scale).all(), (weights, gradient)
