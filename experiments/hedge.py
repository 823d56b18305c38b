"""Exponential weights over the arms' net log wealth (Hedge): the routing of ``routing: hedge``.

With full information every arm's net log growth is observed on every trading day, whichever arm answered, so the
shares can follow the arms' cumulative net log wealth ``G_a`` directly, as in prediction with expert advice:

    share_a = floor + (1 - K floor) * exp(eta G_a) / sum_b exp(eta G_b),   eta = sqrt(8 ln K / t) / daily_range

after ``t`` closed days (the anytime learning rate of Cesa-Bianchi and Lugosi 2006, theorem 2.3, for gains scaled to
[0, 1] by ``daily_range``). Its regret against the best arm grows as ``sqrt(t ln K)``; no exploration floor is needed
for it to learn (Thompson sampling needs one, since there only the routed arm's return is seen).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


def hedge_shares(wealth: Mapping[str, float], days: int, daily_range: float, floor: float = 0.0) -> dict[str, float]:
    """Shares over ``wealth``'s arms (net log wealth over ``days`` closed days); equal before any day."""
    names = sorted(wealth)
    if not names:
        return {}
    if days <= 0 or len(names) == 1:
        weights = np.full(len(names), 1.0 / len(names))
    else:
        eta = math.sqrt(8.0 * math.log(len(names)) / days) / daily_range
        scores = eta * np.array([wealth[n] for n in names])
        weights = np.exp(scores - scores.max())
        weights /= weights.sum()
    shares = floor + (1.0 - floor * len(names)) * weights
    return {name: float(share) for name, share in zip(names, shares)}
