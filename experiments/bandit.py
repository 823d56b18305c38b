"""Gaussian Thompson sampling over arms' realised returns, with a minimum share per arm.

Each arm's mean return has a normal posterior, ``N(mean, var / n)`` from its feedback (a flat prior; an arm with
fewer than ``min_feedback`` returns borrows the pooled variance so that a lucky first return cannot dominate). The
routing shares are the posterior probabilities that each arm is best, estimated from ``draws`` joint samples,
floored at ``min_share`` and renormalised: every arm keeps earning feedback, so a wrong early lead is corrected.
Signed and fractional returns are learnt from as they are (Seldon Core's bandits count ``int(reward * n)``
successes, which rounds a single day's return to zero).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError


@dataclass(frozen=True)
class ArmReturns:
    """Sufficient statistics of one arm's realised returns."""

    n: int
    mean: float
    variance: float  # sample variance (ddof 1); 0 with fewer than 2 returns


def thompson_shares(
    arms: Mapping[str, ArmReturns],
    *,
    min_share: float = 0.05,
    min_feedback: int = 10,
    draws: int = 4_000,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """Routing shares: P(arm is best | feedback), floored at ``min_share``; equal shares before any feedback."""
    names = sorted(arms)
    if not names:
        raise ConfigError("bandit: needs at least one arm")
    if not 0.0 <= min_share * len(names) <= 1.0:
        raise ConfigError(f"bandit.min_share: {min_share} for {len(names)} arms leaves no room to choose")
    counts = np.array([arms[n].n for n in names], dtype=float)
    if counts.sum() == 0:
        return {name: 1.0 / len(names) for name in names}
    means = np.array([arms[n].mean if arms[n].n else 0.0 for n in names])
    variances = np.array([arms[n].variance for n in names])
    enough = counts >= max(min_feedback, 2)
    pooled = float(np.average(variances[enough], weights=counts[enough] - 1)) if enough.any() else 0.0
    if pooled <= 0.0:
        spread = np.abs(means[counts > 0]).max() if (counts > 0).any() else 1.0
        pooled = float(spread * spread) or 1.0
    variances = np.where(enough, variances, pooled)
    # An arm with no feedback yet: centred on the others' mean with the pooled spread of one return.
    means = np.where(counts > 0, means, float(np.average(means, weights=counts)))
    scales = np.sqrt(variances / np.maximum(counts, 1.0))
    rng = rng or np.random.default_rng()
    samples = means + scales * rng.standard_normal((draws, len(names)))
    wins = np.bincount(samples.argmax(axis=1), minlength=len(names)) / draws
    shares = min_share + (1.0 - min_share * len(names)) * wins
    return {name: float(share) for name, share in zip(names, shares, strict=True)}
