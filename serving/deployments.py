"""The Serve deployments behind the ingress: ``AgentDeployment`` serves one agent (an exported policy or a classical
baseline), ``StatsStore`` runs the app's one A/B experiment over its durable log."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np
from ray import serve

from core.errors import ConfigError
from envs.config import RegimeParams
from experiments.consistency import Expectation
from experiments.log_store import ExperimentLog
from experiments.runner import ExperimentRunner
from quant.registry import BaselinesConfig
from serving.agents import BaselineAgent, PolicyAgent


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64, health_check_period_s=5)
class AgentDeployment:
    """Serves one agent: ``allocate`` takes a batch of requests (one forward pass), ``predict`` one observation."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(1)  # tiny MLPs: threads cost more than they give, and replicas share the CPUs
        if spec["kind"] == "rl":
            self.agent = PolicyAgent(spec["path"], spec.get("content_hash"))
        else:
            regimes = spec.get("regimes")
            self.agent = BaselineAgent(
                spec["name"],
                tuple(spec["assets"]),
                spec["closes_needed"],
                None if regimes is None else RegimeParams.model_validate(regimes),
                spec.get("regime_window_days", 0),
                BaselinesConfig.model_validate(spec["config"]) if spec.get("config") else None,
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


STORE_POLL_S = 0.25  # how often the store reads the log's new rows and takes the decisions they call for


@serve.deployment(ray_actor_options={"num_cpus": 0.05}, max_ongoing_requests=1000)
class StatsStore:
    """The app's one running experiment (``experiments.runner``) over the durable log: the ingress replicas
    write the log, this reads it, decides, and tells them the split to route by. Restarted, it rebuilds from the log.

    Calls answer plain dicts; a bad admin request answers ``{"error": {"field", "message"}}`` (a ``ConfigError``
    raised here would reach the ingress wrapped in Ray's own exception)."""

    def __init__(
        self,
        log_url: str,
        versions: dict[str, str],
        fallback: str,
        default_split: dict[str, float],
        expectations: dict[str, dict] | None = None,
    ) -> None:
        """:param versions: every deployed agent -> its model version (the experiment's key includes the arms').
        :param expectations: agent -> its validation distribution (``experiments.consistency.Expectation`` fields)."""
        from ray.serve import metrics

        expected = {name: Expectation(**fields) for name, fields in (expectations or {}).items()}
        self.runner = ExperimentRunner(
            ExperimentLog(log_url), set(versions), fallback, default_split, versions, expected
        )
        self._poller: asyncio.Task | None = None
        keys = ("experiment",)
        self.srm_p = metrics.Gauge(
            "rlportfolio_ab_srm_p_value", "Sample-ratio test p-value of the running experiment", tag_keys=keys
        )
        self.srm_mismatch = metrics.Gauge(
            "rlportfolio_ab_srm_mismatch", "1 when the sample-ratio test rejects the split (p < alpha)", tag_keys=keys
        )
        self.share = metrics.Gauge(
            "rlportfolio_ab_share", "Traffic share per arm of the running experiment", tag_keys=("experiment", "arm")
        )
        self.consistency_e = metrics.Gauge(
            "rlportfolio_ab_consistency_e_value",
            "E-value of an arm's live daily paired difference against its validation distribution",
            tag_keys=("experiment", "arm"),
        )
        self.inconsistent = metrics.Gauge(
            "rlportfolio_ab_inconsistent",
            "1 once an arm's live behaviour is inconsistent with its validation (guardrails.consistency)",
            tag_keys=("experiment", "arm"),
        )

    def _start_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(STORE_POLL_S)
            try:
                self.runner.poll()
                self._gauges()
            except Exception:  # the database may be briefly unavailable: read again next time
                logging.getLogger(__name__).exception("experiment poll failed")

    def _gauges(self) -> None:
        experiment = self.runner.experiment
        if experiment is None:
            return
        tags = {"experiment": self.runner.key}
        ratio = experiment.sample_ratio()
        self.srm_p.set(ratio.p_value, tags=tags)
        self.srm_mismatch.set(float(ratio.mismatch), tags=tags)
        for arm, share in experiment.shares.items():
            self.share.set(share, tags={**tags, "arm": arm})
        for arm, test in experiment.consistency.items():
            reading = test.summary()
            self.consistency_e.set(reading["e_value"], tags={**tags, "arm": arm})
            self.inconsistent.set(float(reading["flagged"]), tags={**tags, "arm": arm})

    def _answer(self, call: Any) -> dict[str, Any]:
        self._start_poller()
        try:
            result = call()
        except ConfigError as exc:
            field, _, message = str(exc).partition(": ")
            return {"error": {"field": field if message else "body", "message": str(exc)}}
        return asdict(result) if is_dataclass(result) else result

    async def configure(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The ingress ``user_config``; the routing to use (a deploy wins when it changes something)."""
        return self._answer(lambda: self.runner.configure(settings))

    async def routing(self) -> dict[str, Any]:
        return self._answer(self.runner.routing)

    async def summary(self) -> dict[str, Any]:
        return self._answer(self.runner.summary)

    async def describe(self) -> dict[str, Any]:
        return self._answer(self.runner.describe)

    # -- the admin API: each logged as the admin's decision; the routing after it ------------------------------------

    async def set_split(self, shares: dict[str, float], reason: str) -> dict[str, Any]:
        return self._answer(lambda: self.runner.set_split(shares, reason))

    async def promote(self, arm: str, reason: str) -> dict[str, Any]:
        return self._answer(lambda: self.runner.promote(arm, reason))

    async def rollback(self, arm: str | None, reason: str) -> dict[str, Any]:
        return self._answer(lambda: self.runner.rollback(arm, reason))

    async def ramp(self, arm: str, step: int, reason: str) -> dict[str, Any]:
        return self._answer(lambda: self.runner.ramp(arm, step, reason))

    async def resume(self, reason: str) -> dict[str, Any]:
        return self._answer(lambda: self.runner.resume(reason))
