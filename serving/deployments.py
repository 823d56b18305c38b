"""The Serve deployments behind the ingress: ``AgentDeployment`` serves one agent (an exported policy or a classical
baseline), ``StatsStore`` holds the app's one set of A/B statistics."""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from envs.config import RegimeParams
from serving.agents import BaselineAgent, PolicyAgent
from serving.router import ABStats


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64, health_check_period_s=5)
class AgentDeployment:
    """Serves one agent: ``allocate`` takes a batch of requests (one forward pass), ``predict`` one observation."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(1)  # tiny MLPs: threads cost more than they give, and replicas share the CPUs
        if spec["kind"] == "rl":
            self.agent = PolicyAgent(spec["path"])
        else:
            regimes = spec.get("regimes")
            self.agent = BaselineAgent(
                spec["name"],
                tuple(spec["assets"]),
                spec["closes_needed"],
                None if regimes is None else RegimeParams.model_validate(regimes),
                spec.get("regime_window_days", 0),
            )

    async def health(self) -> str:  # async: Serve runs plain methods in a thread pool, a costly hop for this
        return "ok"

    async def allocate(self, requests: list[tuple[np.ndarray, np.ndarray]]) -> list[list[float]]:
        """Weights for a batch of ``(closes, held)`` requests, in one forward pass (the ingress batches them)."""
        weights = self.agent.weights_batch([c for c, _ in requests], [h for _, h in requests])
        return [row.tolist() for row in weights]

    async def predict(self, observation: list[float]) -> dict[str, Any]:
        action, weights = self.agent.predict(np.asarray(observation, dtype=np.float32))
        action = int(action) if np.ndim(action) == 0 else np.asarray(action, dtype=float).tolist()
        return {"action": action, "weights": np.asarray(weights, dtype=float).tolist()}


@serve.deployment(ray_actor_options={"num_cpus": 0.05}, max_ongoing_requests=1000)
class StatsStore:
    """The app's one ``ABStats``: every ingress replica sends its records here, so ``/ab/stats`` and ``/feedback``
    see all traffic whichever replica serves them, and the statistics outlive an ingress restart."""

    def __init__(self) -> None:
        self.stats = ABStats()

    async def ingest(self, records: list, errors: list, shadows: list) -> None:
        self.stats.ingest(records, errors, shadows)

    async def feedback(self, request_id: str, realized_return: float) -> str | None:
        """The agent that served ``request_id``, or None if the id is unknown or its return was already reported."""
        try:
            return self.stats.feedback(request_id, realized_return)
        except KeyError:
            return None

    async def summary(self) -> dict[str, Any]:
        return self.stats.summary()
