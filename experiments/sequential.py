"""Always-valid comparison of two arms' mean realised returns: a normal-mixture confidence sequence.

Re-running a fixed-horizon test (Welch, z) at every look and stopping at the first p < alpha declares far more than
alpha false winners. A confidence sequence covers the true difference at every sample size at once, so an
experimenter may look after every feedback and stop whenever it excludes zero.

The form is the asymptotic normal-mixture confidence sequence of Howard, Ramdas, McAuliffe and Sekhon (2021,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", eq. 14) as Waudby-Smith et al. (2023,
arXiv 2103.06476) make it asymptotic, and as GrowthBook (``gbstats/frequentist/tests.py``) and Eppo document it for
A/B tests: with ``n`` observations in all and ``s^2 = n * Var(difference of means)``,

    half-width = s * sqrt(2 (n rho^2 + 1) / (n rho)^2 * ln(sqrt(n rho^2 + 1) / alpha)),

where ``rho`` tunes the sample size at which the sequence is tightest (``tuning_n``, GrowthBook's N*):
``rho^2 = (-2 ln alpha + ln(-2 ln alpha + 1)) / tuning_n``. The always-valid p-value is the smallest alpha whose
sequence excludes zero, ``min(1, sqrt(n rho^2 + 1) exp(-n^2 rho^2 d^2 / (2 s^2 (n rho^2 + 1))))`` (the inverse of
the mixture likelihood ratio), kept as its running minimum over looks so that it never rises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError

DEFAULT_TUNING_N = 5_000  # GrowthBook's default N*


def mixture_rho_squared(alpha: float, tuning_n: float = DEFAULT_TUNING_N) -> float:
    """``rho^2`` that makes the sequence tightest near ``tuning_n`` observations (Howard et al. 2021, eq. 15)."""
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha: must lie in (0, 1), got {alpha}")
    if tuning_n <= 0:
        raise ConfigError(f"tuning_n: must be positive, got {tuning_n}")
    log_term = -2.0 * math.log(alpha)
    return (log_term + math.log(log_term + 1.0)) / tuning_n


@dataclass(frozen=True)
class SequentialResult:
    """The always-valid comparison at one look."""

    difference: float  # challenger minus control, mean realised return
    lower: float  # the confidence sequence at level 1 - alpha
    upper: float
    p_value: float  # always-valid, at this look (before the running minimum)
    observations: int


def confidence_sequence(
    difference: float, variance: float, observations: int, alpha: float, tuning_n: float = DEFAULT_TUNING_N
) -> SequentialResult:
    """The sequence for a difference of means.

    :param difference: the estimate (challenger mean minus control mean).
    :param variance: its estimated variance (``s_a^2 / n_a + s_b^2 / n_b`` for two independent arms).
    :param observations: ``n_a + n_b``.
    """
    if observations <= 0 or not math.isfinite(variance) or variance < 0:
        return SequentialResult(difference, -math.inf, math.inf, 1.0, observations)
    if variance == 0.0:
        # No spread observed (constant returns, or too few): nothing to scale the evidence by. Treating it as an
        # exact difference let float rounding of two equal constant means (1e-19 apart) read as certainty.
        return SequentialResult(difference, -math.inf, math.inf, 1.0, observations)
    half, p = sequence_bounds(np.float64(difference), np.float64(variance), np.float64(observations), alpha, tuning_n)
    return SequentialResult(difference, difference - float(half), difference + float(half), float(p), observations)


def sequence_bounds(
    difference: np.ndarray, variance: np.ndarray, observations: np.ndarray, alpha: float, tuning_n: float
) -> tuple[np.ndarray, np.ndarray]:
    """Half-widths and always-valid p-values, elementwise over arrays (positive variances and counts): the
    vectorised core ``confidence_sequence`` and ``benchmarks/ab_validity.py`` share."""
    rho2 = mixture_rho_squared(alpha, tuning_n)
    n = np.asarray(observations, dtype=np.float64)
    s2 = np.asarray(variance, dtype=np.float64) * n
    spread = n * rho2 + 1.0
    half = np.sqrt(s2 * 2.0 * spread / (n * n * rho2) * np.log(np.sqrt(spread) / alpha))
    exponent = -(n * n * rho2 * np.square(difference)) / (2.0 * s2 * spread)
    return half, np.minimum(1.0, np.sqrt(spread) * np.exp(exponent))


class RunningPValue:
    """The always-valid p-value's running minimum over looks: it can only fall, as the theory allows."""

    def __init__(self) -> None:
        self.value = 1.0

    def update(self, p_value: float) -> float:
        self.value = min(self.value, p_value)
        return self.value
