"""The A/B ingress: a FastAPI app inside a Serve deployment that chooses an arm per request, validates the request
against it, calls it (batching concurrent calls per agent), falls back on failure, and records A/B statistics and
Prometheus series. The HTTP API is documented in docs/architecture.md and at ``/docs``.
"""

# No "from __future__ import annotations": FastAPI must resolve the endpoint annotations at class creation.

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import Header, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve

from serving.agents import AgentInfo
from serving.batching import batched_caller
from serving.http import api, authorize, parse_allocation, problem
from serving.metrics import RequestMetrics
from serving.router import ABRouter, StatsBuffer, TrafficSplit, UnknownAgent
from serving.schemas import (
    AgentDescription,
    AllocateRequest,
    AllocateResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    PredictRequest,
    PredictResponse,
)

log = logging.getLogger(__name__)

AGENT_TIMEOUT_S = 5.0
STATS_FLUSH_S = 0.25  # how often each ingress replica hands its A/B records to the app's StatsStore
METRIC_PREFIX = "rlportfolio_"


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=256)
@serve.ingress(api)
class Ingress:
    """A/B router: chooses an arm, validates the request against it, calls it, falls back on failure."""

    def __init__(
        self,
        handles: dict[str, Any],
        store: Any,
        infos: dict[str, dict],
        fallback: str,
        token_sha256: str | None = None,
    ) -> None:
        from ray.serve import metrics

        # Handles bound in the driver carry the transport chosen there; fresh ones take this replica's (gRPC in
        # Serve's high-throughput mode, whatever the order in which the driver imported Serve and set the mode).
        self.handles = {name: serve.get_deployment_handle(h.deployment_name, h.app_name) for name, h in handles.items()}
        self.store = serve.get_deployment_handle(store.deployment_name, store.app_name)
        self.infos = {name: AgentInfo(**info) for name, info in infos.items()}
        self.fallback = fallback
        self.token_sha256 = token_sha256
        self.stats = StatsBuffer()
        self._flusher: asyncio.Task | None = None
        self._flush_lock = asyncio.Lock()  # one hand-over at a time, so a store call after _flush sees every record
        self.router = ABRouter(
            TrafficSplit.create(
                {n: 1.0 for n, i in self.infos.items() if i.kind == "rl"} or {fallback: 1.0}, set(self.infos)
            ),
            set(self.infos),
        )
        self.series = RequestMetrics(METRIC_PREFIX, metrics)
        self._background: set[asyncio.Task] = set()
        self._allocate = {name: batched_caller(handle) for name, handle in self.handles.items()}

    async def __del__(self) -> None:
        """Serve awaits this on a graceful shutdown: hand over the last records, if the store is still there."""
        try:
            self.series.flush()
        except Exception:
            log.exception("shutting down: recording the last Prometheus series failed")
        try:
            async with asyncio.timeout(2.0):
                await self._flush()
        except Exception as exc:
            log.warning(
                "shutting down: %d A/B records not handed over (%s)", len(self.stats.records), type(exc).__name__
            )

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: ``{"split": {agent: weight}, "shadow": agent | null}``; applied live."""
        split = TrafficSplit.create(config.get("split") or {}, set(self.infos), config.get("shadow"))
        self.router = ABRouter(split, set(self.infos))
        log.info("traffic split now %s (shadow %s), version %s", split.as_dict(), split.shadow, split.version)

    # -- helpers -----------------------------------------------------------------------------------------------

    async def _flush(self) -> None:
        """Hand this replica's A/B records to the StatsStore; if it cannot take them, keep them for the next try."""
        async with self._flush_lock:
            taken = self.stats.take()
            if taken is None:
                return
            try:
                await self.store.ingest.remote(*taken)
            except Exception:
                self.stats.put_back(taken)
                raise

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(STATS_FLUSH_S)
            try:
                self.series.flush()
            except Exception:  # a batch of Prometheus records is lost; the A/B statistics are not
                log.exception("recording the Prometheus series failed")
            try:
                await self._flush()
            except Exception as exc:
                log.warning(
                    "A/B statistics store unavailable (%s); keeping the records for the next try", type(exc).__name__
                )

    def _start_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    def _choose(self, client_id: str | None, override: str | None) -> str:
        try:
            return self.router.choose(client_id, override)
        except UnknownAgent:
            raise problem(
                400, "header.X-Agent", f"unknown agent '{override}'; deployed agents are {sorted(self.infos)}"
            ) from None

    async def _call(self, agent: str, endpoint: str, call: Awaitable[Any]) -> Any:
        self._start_flusher()  # it also records the Prometheus series
        started = time.perf_counter()
        try:
            async with asyncio.timeout(AGENT_TIMEOUT_S):  # unlike wait_for, no extra task per call
                result = await call
        except Exception:
            self.series.failed(agent, endpoint)
            self.stats.record_error(agent)
            raise
        self.series.observe(agent, endpoint, (time.perf_counter() - started) * 1000)
        return result

    def _candidates(self, first: str, n_closes: int) -> list[str]:
        """The routed agent (tried twice), then the other arms by traffic weight, then the baseline fallback; only
        agents that can use ``n_closes`` closes."""
        others = [name for name, _ in sorted(self.router.split.weights, key=lambda nw: -nw[1]) if name != first]
        tail = [self.fallback] if self.fallback not in (first, *others) else []
        return [first, first] + [n for n in (*others, *tail) if self.infos[n].closes_needed <= n_closes]

    def _shadow(self, agent: str, request: tuple[np.ndarray, np.ndarray], n_closes: int) -> None:
        shadow = self.router.split.shadow
        if shadow is None or shadow == agent or self.infos[shadow].closes_needed > n_closes:
            return

        async def run() -> None:
            started = time.perf_counter()
            try:
                await self._call(shadow, "allocate_shadow", self._allocate[shadow](request))
                self.stats.record_shadow(shadow, (time.perf_counter() - started) * 1000)
            except Exception:  # the shadow never affects the answer; its failures are counted in _call
                pass

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- endpoints ----------------------------------------------------------------------------------------------

    @api.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    async def health(self) -> JSONResponse:
        """200 when every routed agent answers, 503 otherwise."""
        routed = {name for name, _ in self.router.split.weights} | ({self.router.split.shadow} - {None})
        status = {}
        for name in sorted(routed):
            try:
                status[name] = await asyncio.wait_for(self.handles[name].health.remote(), 2.0)
            except Exception as exc:
                status[name] = f"unavailable: {type(exc).__name__}"
        healthy = all(v == "ok" for v in status.values())
        return JSONResponse(
            {"status": "ok" if healthy else "degraded", "agents": status}, status_code=200 if healthy else 503
        )

    @api.get("/agents", response_model=list[AgentDescription])
    async def agents(self, authorization: str | None = Header(default=None)) -> list[AgentDescription]:
        """Deployed agents with algorithm, model version, traffic weight and validation metrics."""
        authorize(self.token_sha256, authorization)
        split = self.router.split.as_dict()
        return [
            AgentDescription(
                name=name,
                kind=i.kind,
                algorithm=i.algorithm,
                model_version=i.model_version,
                content_hash=i.content_hash,
                traffic_weight=split.get(name, 0.0),
                shadow=self.router.split.shadow == name,
                assets=list(i.assets),
                closes_needed=i.closes_needed,
                validation=i.validation,
            )
            for name, i in sorted(self.infos.items())
        ]

    @api.post("/allocate", response_model=AllocateResponse, responses={400: {}, 401: {}, 413: {}, 422: {}, 503: {}})
    async def allocate(
        self,
        body: AllocateRequest,
        x_agent: str | None = Header(default=None),
        authorization: str | None = Header(default=None),
    ) -> JSONResponse:
        """Target weights for the closes given, from the routed agent (or the one named by ``X-Agent``)."""
        authorize(self.token_sha256, authorization)
        started = time.perf_counter()
        chosen = self._choose(body.client_id, x_agent)
        closes, held = parse_allocation(body, self.infos[chosen])
        request_id = uuid.uuid4().hex
        for agent in self._candidates(chosen, closes.shape[0]):
            try:
                weights = await self._call(agent, "allocate", self._allocate[agent]((closes, held)))
            except Exception as exc:
                log.warning("agent %s failed (%s); trying the next", agent, type(exc).__name__)
                continue
            latency = (time.perf_counter() - started) * 1000
            fallback = agent != chosen
            self.stats.record(agent, request_id, latency, fallback=fallback)
            self.series.answered(agent, "allocate")
            self._shadow(agent, (closes, held), closes.shape[0])
            info = self.infos[agent]
            # An AllocateResponse by construction (tests check it against the schema): built as JSON here, FastAPI
            # would otherwise validate and serialise it through the response model again on every request.
            return JSONResponse(
                {
                    "weights": dict(zip(info.assets, weights)),
                    "agent": agent,
                    "model_version": info.model_version,
                    "request_id": request_id,
                    "fallback": fallback,
                }
            )
        raise HTTPException(status_code=503, detail="no agent could answer; see /health")

    @api.post("/predict", response_model=PredictResponse, responses={400: {}, 401: {}, 422: {}, 503: {}})
    async def predict(
        self,
        body: PredictRequest,
        x_agent: str | None = Header(default=None),
        authorization: str | None = Header(default=None),
    ) -> PredictResponse:
        """Action and weights for a raw observation (``envs.features`` layout); for callers that build features."""
        authorize(self.token_sha256, authorization)
        if x_agent is None:
            # Observations only make sense to RL agents: route among the split's RL arms.
            rl_arms = [name for name, _ in self.router.split.weights if self.infos[name].kind == "rl"]
            if not rl_arms:
                raise problem(422, "header.X-Agent", "the traffic split has no RL agent; name one in X-Agent")
            agent = self._choose(None, None)
            agent = agent if agent in rl_arms else rl_arms[0]
        else:
            agent = self._choose(None, x_agent)
        info = self.infos[agent]
        if info.kind != "rl":
            raise problem(422, "header.X-Agent", f"'{agent}' is a classical baseline; it needs prices (/allocate)")
        if len(body.observation) != info.observation_size:
            raise problem(
                422,
                "body.observation",
                f"needs {info.observation_size} entries for '{agent}', got {len(body.observation)}",
            )
        try:
            out = await self._call(agent, "predict", self.handles[agent].predict.remote(body.observation))
        except Exception:
            raise HTTPException(status_code=503, detail=f"agent '{agent}' is unavailable") from None
        self.series.answered(agent, "predict")
        return PredictResponse(
            action=out["action"],
            weights=dict(zip(info.assets, out["weights"])),
            agent=agent,
            model_version=info.model_version,
            request_id=uuid.uuid4().hex,
        )

    @api.post("/feedback", response_model=FeedbackResponse, responses={401: {}, 404: {}, 422: {}})
    async def feedback(
        self, body: FeedbackRequest, authorization: str | None = Header(default=None)
    ) -> FeedbackResponse:
        """Report the realised portfolio return of an earlier ``/allocate`` answer."""
        authorize(self.token_sha256, authorization)
        agent = await self._store_call(lambda store: store.feedback.remote(body.request_id, body.realized_return))
        if agent is None:
            raise problem(
                404, "body.request_id", f"unknown request id '{body.request_id}' (or its return was already reported)"
            )
        return FeedbackResponse(request_id=body.request_id, agent=agent)

    async def _store_call(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        """``call(store handle)`` once this replica's records are in the StatsStore (a handle call is sent when it is
        made, so it is made here); 503 if the store does not answer."""
        try:
            async with asyncio.timeout(AGENT_TIMEOUT_S):
                await self._flush()
                return await call(self.store)
        except Exception as exc:
            raise HTTPException(
                status_code=503, detail=f"A/B statistics store unavailable ({type(exc).__name__})"
            ) from None

    @api.get("/ab/stats")
    async def ab_stats(self, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """Per-arm counts, latency, realised-return statistics and pairwise Welch t-tests with a verdict."""
        authorize(self.token_sha256, authorization)
        summary = await self._store_call(lambda store: store.summary.remote())
        return {
            "split": self.router.split.as_dict(),
            "shadow": self.router.split.shadow,
            "split_version": self.router.split.version,
            **summary,
        }

    @api.get("/metrics", response_class=PlainTextResponse)
    async def metrics(self, authorization: str | None = Header(default=None)) -> PlainTextResponse:
        """This app's Prometheus series (also scraped directly from Ray's metrics port, see the README)."""
        authorize(self.token_sha256, authorization)
        import httpx
        import ray

        node_ip = ray.util.get_node_ip_address()
        ports = [n["MetricsExportPort"] for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] == node_ip]
        lines: list[str] = []
        async with httpx.AsyncClient(timeout=5.0) as client:
            for port in ports:
                text = (await client.get(f"http://{node_ip}:{port}/metrics")).text
                lines += [line for line in text.splitlines() if METRIC_PREFIX in line]
        return PlainTextResponse("\n".join(lines) + "\n")
