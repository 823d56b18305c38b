"""A/B routing and its statistics: pure Python, no Serve, so every rule is unit-testable.

Routing: a weighted split between arms; a client id maps to an arm through a hash of (client id, split), so the same
client keeps its arm while the split is unchanged; the ``X-Agent`` header overrides; a shadow arm may be evaluated
on every request but is never returned.

Statistics: per arm request counts, latency, errors, and realised portfolio returns reported through feedback, with
a Welch t-test between every pair of arms (Welch 1947) and a plain-language verdict. Each ingress replica collects
what it sees in a ``StatsBuffer`` and hands it over to the one ``ABStats`` of the app in batches.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import stats as scipy_stats

from core.errors import ConfigError
from serving.buckets import unit_point


class UnknownAgent(KeyError):
    """An agent name that is not deployed (override header, split or shadow)."""


@dataclass(frozen=True)
class TrafficSplit:
    """Normalised traffic weights over arms, and an optional shadow arm."""

    weights: tuple[tuple[str, float], ...]
    shadow: str | None = None

    @classmethod
    def create(cls, weights: Mapping[str, float], known: set[str], shadow: str | None = None) -> TrafficSplit:
        if not weights:
            raise ConfigError("split: needs at least one agent with a positive weight")
        unknown = sorted(set(weights) - known)
        if unknown:
            raise ConfigError(f"split: unknown agent(s) {unknown}; deployed agents are {sorted(known)}")
        if any(not math.isfinite(w) or w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ConfigError(f"split: weights must be non-negative with a positive sum, got {dict(weights)}")
        if shadow is not None and shadow not in known:
            raise ConfigError(f"shadow: unknown agent '{shadow}'; deployed agents are {sorted(known)}")
        total = float(sum(weights.values()))
        return cls(tuple(sorted((name, w / total) for name, w in weights.items() if w > 0)), shadow)

    @cached_property  # read on every routed request
    def version(self) -> str:
        """Short hash of the split: stickiness holds while it is unchanged."""
        return hashlib.sha256(json.dumps([self.weights, self.shadow]).encode()).hexdigest()[:12]

    def as_dict(self) -> dict[str, float]:
        return dict(self.weights)


class ABRouter:
    """Chooses an arm per request."""

    def __init__(self, split: TrafficSplit, known: set[str], rng: random.Random | None = None) -> None:
        self.split = split
        self.known = set(known)
        self._rng = rng or random.Random()

    def choose(self, client_id: str | None = None, override: str | None = None) -> str:
        if override is not None:
            if override not in self.known:
                raise UnknownAgent(override)
            return override
        u = unit_point(self.split.version, client_id) if client_id else self._rng.random()
        cumulative = 0.0
        for name, weight in self.split.weights:
            cumulative += weight
            if u < cumulative:
                return name
        return self.split.weights[-1][0]


@dataclass
class ArmStats:
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    shadow_requests: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))
    shadow_latencies_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))
    returns: list = field(default_factory=list)


class StatsBuffer:
    """What one ingress replica has seen since it last handed its records to the app's ``ABStats``.

    Appending to a list is all a request pays; ``take`` empties the buffer for ``ABStats.ingest``.
    """

    def __init__(self) -> None:
        self.records: list[tuple[str, str, float, bool]] = []
        self.errors: list[str] = []
        self.shadows: list[tuple[str, float]] = []

    def record(self, agent: str, request_id: str, latency_ms: float, *, fallback: bool = False) -> None:
        self.records.append((agent, request_id, latency_ms, fallback))

    def record_error(self, agent: str) -> None:
        self.errors.append(agent)

    def record_shadow(self, agent: str, latency_ms: float) -> None:
        self.shadows.append((agent, latency_ms))

    def take(self) -> tuple[list, list, list] | None:
        """The records so far, or None when there are none; the buffer starts empty again."""
        if not (self.records or self.errors or self.shadows):
            return None
        taken = self.records, self.errors, self.shadows
        self.records, self.errors, self.shadows = [], [], []
        return taken

    def put_back(self, taken: tuple[list, list, list], limit: int = 100_000) -> None:
        """Return records ``ingest`` could not take, ahead of newer ones; beyond ``limit`` each the oldest go."""
        self.records = (taken[0] + self.records)[-limit:]
        self.errors = (taken[1] + self.errors)[-limit:]
        self.shadows = (taken[2] + self.shadows)[-limit:]


class ABStats:
    """Thread-safe per-arm counters; remembers which arm served the last ``memory`` request ids for feedback."""

    def __init__(self, memory: int = 100_000) -> None:
        self._arms: dict[str, ArmStats] = {}
        self._requests: OrderedDict[str, str] = OrderedDict()
        self._memory = memory
        self._lock = threading.Lock()

    def _arm(self, name: str) -> ArmStats:
        return self._arms.setdefault(name, ArmStats())

    def record(self, agent: str, request_id: str, latency_ms: float, *, fallback: bool = False) -> None:
        with self._lock:
            arm = self._arm(agent)
            arm.requests += 1
            arm.fallbacks += int(fallback)
            arm.latencies_ms.append(latency_ms)
            self._requests[request_id] = agent
            if len(self._requests) > self._memory:
                self._requests.popitem(last=False)

    def record_error(self, agent: str) -> None:
        with self._lock:
            self._arm(agent).errors += 1

    def record_shadow(self, agent: str, latency_ms: float) -> None:
        with self._lock:
            arm = self._arm(agent)
            arm.shadow_requests += 1
            arm.shadow_latencies_ms.append(latency_ms)

    def ingest(self, records: list, errors: list, shadows: list) -> None:
        """Apply a ``StatsBuffer.take()``."""
        for agent, request_id, latency_ms, fallback in records:
            self.record(agent, request_id, latency_ms, fallback=fallback)
        for agent in errors:
            self.record_error(agent)
        for agent, latency_ms in shadows:
            self.record_shadow(agent, latency_ms)

    def feedback(self, request_id: str, realized_return: float) -> str:
        """Attach a realised return to the arm that served ``request_id``, once; ``KeyError`` if unknown or used."""
        with self._lock:
            agent = self._requests.pop(request_id)
            self._arm(agent).returns.append(float(realized_return))
            return agent

    def summary(self, alpha: float = 0.05) -> dict:
        with self._lock:
            arms = {
                name: (
                    arm.requests,
                    arm.errors,
                    arm.fallbacks,
                    arm.shadow_requests,
                    list(arm.latencies_ms),
                    list(arm.returns),
                    list(arm.shadow_latencies_ms),
                )
                for name, arm in self._arms.items()
            }
        out: dict = {"arms": {}, "comparisons": []}
        for name, (requests, errors, fallbacks, shadow, latencies, returns, shadow_latencies) in sorted(arms.items()):
            lat = np.asarray(latencies) if latencies else None
            ret = np.asarray(returns) if returns else None
            out["arms"][name] = {
                "requests": requests,
                "errors": errors,
                "fallbacks": fallbacks,
                "shadow_requests": shadow,
                "latency_ms": None
                if lat is None
                else {
                    "p50": float(np.percentile(lat, 50)),
                    "p95": float(np.percentile(lat, 95)),
                    "mean": float(lat.mean()),
                },
                "shadow_latency_ms": None
                if not shadow_latencies
                else {"p50": float(np.percentile(shadow_latencies, 50))},
                "feedback": 0 if ret is None else len(ret),
                "mean_return": None if ret is None else float(ret.mean()),
                "std_return": None if ret is None or len(ret) < 2 else float(ret.std(ddof=1)),
            }
        names = sorted(n for n, a in arms.items() if len(a[5]) >= 2)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                out["comparisons"].append(compare(a, np.asarray(arms[a][5]), b, np.asarray(arms[b][5]), alpha))
        return out


def compare(name_a: str, returns_a: np.ndarray, name_b: str, returns_b: np.ndarray, alpha: float = 0.05) -> dict:
    """Welch's t-test on mean realised returns of two arms, with a plain-language verdict."""
    if returns_a.std() == 0 and returns_b.std() == 0:
        statistic, p_value = float("nan"), 1.0 if returns_a.mean() == returns_b.mean() else 0.0
    else:
        statistic, p_value = scipy_stats.ttest_ind(returns_a, returns_b, equal_var=False)
    difference = float(returns_a.mean() - returns_b.mean())
    if p_value < alpha:
        better = name_a if difference > 0 else name_b
        verdict = f"{better} earns more: the difference is significant at the {alpha:.0%} level (p = {p_value:.3g})"
    else:
        verdict = (
            f"no significant difference yet (p = {p_value:.3g}, {len(returns_a)} vs {len(returns_b)} feedback "
            "returns): keep collecting"
        )
    return {
        "a": name_a,
        "b": name_b,
        "mean_difference": difference,
        "t_statistic": None if math.isnan(float(statistic)) else float(statistic),
        "p_value": float(p_value),
        "test": "Welch t-test",
        "verdict": verdict,
    }
