"""Choosing an arm per request: pure Python, no Serve, so every rule is unit-testable.

The running experiment's bucket layout (``experiments.buckets``) decides: a client id hashes, salted with the experiment's
key, to a point of [0, 1) and the arm owning that point serves it, so a client keeps its arm while the layout keeps
that point, and a split change moves only the clients it must. Requests without a client id take a random point.
The ``X-Agent`` header overrides (a *forced* request, logged but kept out of the experiment's statistics).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from experiments.buckets import BucketLayout, unit_point


class UnknownAgent(KeyError):
    """An agent name that is not deployed (override header, split or shadow)."""


@dataclass(frozen=True)
class Route:
    arm: str
    forced: bool


class Router:
    """Routes by one version of the experiment's layout (``routing``: ``StatsStore.routing()``'s dict)."""

    def __init__(self, routing: Mapping[str, Any], known: set[str], rng: random.Random | None = None) -> None:
        self.experiment: str = routing["experiment"]
        self.version: int = int(routing["version"])
        self.layout = BucketLayout.from_json(routing["layout"])
        self.shares = self.layout.shares()
        self.shadow: str | None = routing.get("shadow")
        self.known = set(known)
        self._rng = rng or random.Random()

    def choose(self, client_id: str | None = None, override: str | None = None) -> Route:
        if override is not None:
            if override not in self.known:
                raise UnknownAgent(override)
            return Route(override, True)
        point = unit_point(self.experiment, client_id) if client_id else self._rng.random()
        return Route(self.layout.arm(point), False)

    def by_share(self) -> list[str]:
        """Arms with traffic, largest share first."""
        return [n for n, s in sorted(self.shares.items(), key=lambda ns: (-ns[1], ns[0])) if s > 0]
