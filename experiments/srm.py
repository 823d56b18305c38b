"""Sample-ratio mismatch: are the arms' assignment counts what the split says they should be?

A chi-square goodness-of-fit test of the counts against the split's expected shares (scipy). A tiny p-value (below
``SRM_ALPHA`` = 0.001, the threshold GrowthBook and most experiment platforms use) means assignment is broken
(a crashing arm, a caching layer, a client that retries until it gets one arm) and no comparison of the arms can be
trusted until it is fixed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats

SRM_ALPHA = 0.001


@dataclass(frozen=True)
class SampleRatio:
    p_value: float
    chi_square: float
    mismatch: bool  # p_value < alpha
    expected: dict[str, float]
    observed: dict[str, int]


def sample_ratio_test(
    counts: Mapping[str, int], expected: Mapping[str, float], alpha: float = SRM_ALPHA
) -> SampleRatio:
    """The test of assignment ``counts`` against ``expected`` counts.

    ``expected[arm]`` is the sum, over the assignments made, of the arm's share at that moment: with a fixed split,
    ``total * share``; with a ramp or a bandit the shares move and the sum follows them. Arms expected to get
    nothing are left out (they cannot mismatch).
    """
    names = sorted(name for name, value in expected.items() if value > 0)
    observed = {n: int(counts.get(n, 0)) for n in names}
    total, total_expected = sum(observed.values()), sum(expected[n] for n in names)
    if len(names) < 2 or total == 0 or total_expected <= 0:
        return SampleRatio(1.0, 0.0, False, {n: float(expected[n]) for n in names}, observed)
    scaled = {n: expected[n] * total / total_expected for n in names}  # chisquare needs equal totals
    chi2, p = stats.chisquare([observed[n] for n in names], [scaled[n] for n in names])
    p = float(p) if math.isfinite(p) else 1.0
    return SampleRatio(p, float(chi2), p < alpha, scaled, observed)
