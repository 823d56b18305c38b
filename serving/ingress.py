"""The A/B ingress: the HTTP routes of a FastAPI app inside a Serve deployment. Each request is routed to an arm by
the running experiment's layout, validated against it and answered by it (concurrent calls per agent batched),
with a fallback on failure; every answer and feedback is logged durably before it is acknowledged
(``serving.log_writer``); the statistics and the admin API go to the experiment store (``serving.store_client``).
The HTTP API is documented in docs/architecture.md and at ``/docs``.
"""

# No "from __future__ import annotations": FastAPI must resolve the endpoint annotations at class creation.

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import asdict
from typing import Any

import numpy as np
from fastapi import Header, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve

from core.errors import ConfigError
from experiments.log_schema import Assignment, Feedback
from experiments.log_store import ExperimentLog
from experiments.router import Route, Router, UnknownAgent
from serving.agents import AgentInfo
from serving.batching import batched_caller
from serving.http import api, authorize, authorize_admin, parse_allocation, problem
from serving.log_writer import LogUnavailable, LogWriter
from serving.metrics import RequestMetrics, scrape_node_series
from serving.schemas import (
    ABStatsResponse,
    AgentDescription,
    AllocateRequest,
    AllocateResponse,
    ArmRequest,
    ExperimentView,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    PredictRequest,
    PredictResponse,
    RampRequest,
    RollbackRequest,
    RoutingView,
    SplitRequest,
)
from serving.store_client import StoreClient, StoreRefused, StoreUnavailable

log = logging.getLogger(__name__)

AGENT_TIMEOUT_S = 5.0
METRIC_PREFIX = "rlportfolio_"
CONFLICTS = ("rolled back", "was promoted", "routes by")  # ExperimentRunner refusals that are 409, not 422


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
        log_url: str = "sqlite:///runs/experiments.db",
    ) -> None:
        from ray.serve import metrics

        # Handles bound in the driver carry the transport chosen there; fresh ones take this replica's (gRPC in
        # Serve's high-throughput mode, whatever the order in which the driver imported Serve and set the mode).
        self.handles = {name: serve.get_deployment_handle(h.deployment_name, h.app_name) for name, h in handles.items()}
        self.infos = {name: AgentInfo(**info) for name, info in infos.items()}
        self.store = StoreClient(serve.get_deployment_handle(store.deployment_name, store.app_name), set(self.infos))
        self.fallback = fallback
        self.token_sha256 = token_sha256
        self.writer = LogWriter(ExperimentLog(log_url))
        self.series = RequestMetrics(METRIC_PREFIX, metrics)
        self._background: set[asyncio.Task] = set()
        self._allocate = {name: batched_caller(handle) for name, handle in self.handles.items()}

    @property
    def router(self) -> Router:
        """The routing this replica follows (Serve calls ``reconfigure``, which sets it, before any request)."""
        if self.store.router is None:
            raise HTTPException(status_code=503, detail="ingress replica starting; retry")
        return self.store.router

    async def __del__(self) -> None:
        """Serve awaits this on a graceful shutdown: record the last series and write the rows still queued."""
        try:
            self.series.flush()
        except Exception:
            log.exception("shutting down: recording the last Prometheus series failed")
        await self.writer.drain(2.0)

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config`` (``ExperimentSettings``: ``experiment``, ``split``, ``shadow``), applied live by the
        experiment store: a deploy that changes the settings wins, the same settings leave the state as it is."""
        try:
            await self.store.configure(config)
        except StoreRefused as exc:
            raise ConfigError(exc.message) from None
        self._start_background()  # from the start: an idle replica must not route its next request by a stale split

    # -- helpers -----------------------------------------------------------------------------------------------

    def _start_background(self) -> None:
        self.store.keep_current(self.series.flush)
        self.writer.start()

    async def _durable(self, assignment: Assignment | None = None, feedback: Feedback | None = None) -> Any:
        try:
            return await self.writer.durable(assignment, feedback)
        except LogUnavailable as exc:
            raise HTTPException(
                status_code=503, detail=f"experiment log unavailable ({exc}); not acknowledged, retry"
            ) from None

    def _choose(self, client_id: str | None, override: str | None) -> Route:
        try:
            return self.router.choose(client_id, override)
        except UnknownAgent:
            raise problem(
                400, "header.X-Agent", f"unknown agent '{override}'; deployed agents are {sorted(self.infos)}"
            ) from None

    async def _call(self, agent: str, endpoint: str, call: Awaitable[Any]) -> Any:
        self._start_background()  # the flusher also records the Prometheus series
        started = time.perf_counter()
        try:
            async with asyncio.timeout(AGENT_TIMEOUT_S):  # unlike wait_for, no extra task per call
                result = await call
        except Exception:
            self.series.failed(agent, endpoint)
            raise
        self.series.observe(agent, endpoint, (time.perf_counter() - started) * 1000)
        return result

    def _candidates(self, first: str, n_closes: int) -> list[str]:
        """The routed agent (tried twice), then the other arms by traffic weight, then the baseline fallback; only
        agents that can use ``n_closes`` closes."""
        others = [name for name in self.router.by_share() if name != first]
        tail = [self.fallback] if self.fallback not in (first, *others) else []
        return [first, first] + [n for n in (*others, *tail) if self.infos[n].closes_needed <= n_closes]

    def _shadow(self, agent: str, request: tuple[np.ndarray, np.ndarray], n_closes: int, request_id: str) -> None:
        router = self.router
        shadow = router.shadow
        if shadow is None or shadow == agent or self.infos[shadow].closes_needed > n_closes:
            return

        async def run() -> None:
            started = time.perf_counter()
            try:
                weights = await self._call(shadow, "allocate_shadow", self._allocate[shadow](request))
            except Exception:  # the shadow never affects the answer; its failures are counted in _call
                return
            row = Assignment(
                request_id=f"{request_id}:shadow",
                experiment=router.experiment,
                routed_arm=shadow,
                arm=shadow,
                weights=tuple(weights),
                latency_ms=(time.perf_counter() - started) * 1000,
                split_version=router.version,
                model_version=self.infos[shadow].model_version,
                kind="shadow",
            )
            self.writer.enqueue(row, wait=False)  # what it would have answered, for offline analysis

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- endpoints ----------------------------------------------------------------------------------------------

    @api.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    async def health(self) -> JSONResponse:
        """200 when every routed agent answers, 503 otherwise."""
        routed = set(self.router.by_share()) | ({self.router.shadow} - {None})
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
        router = self.router
        return [
            AgentDescription.model_validate(
                {**asdict(info), "traffic_weight": router.shares.get(name, 0.0), "shadow": router.shadow == name}
            )
            for name, info in sorted(self.infos.items())
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
        router = self.router
        route = self._choose(body.client_id, x_agent)
        chosen = route.arm
        closes, held = parse_allocation(body, self.infos[chosen])
        request_id = uuid.uuid4().hex
        logged = {  # what the log records of this request, whichever agent answers it
            "request_id": request_id,
            "experiment": router.experiment,
            "routed_arm": chosen,
            "split_version": router.version,
            "client_id": body.client_id or "",
            "forced": route.forced,
        }
        failures = 0
        for agent in self._candidates(chosen, closes.shape[0]):
            try:
                weights = await self._call(agent, "allocate", self._allocate[agent]((closes, held)))
            except Exception as exc:
                log.warning("agent %s failed (%s); trying the next", agent, type(exc).__name__)
                failures += 1
                continue
            info = self.infos[agent]
            row = Assignment(
                **logged,
                arm=agent,
                weights=tuple(weights),
                latency_ms=(time.perf_counter() - started) * 1000,
                model_version=info.model_version,
                errors=failures,
            )
            await self._durable(row)  # acknowledged only once logged
            self.series.answered(agent, "allocate")
            self._shadow(agent, (closes, held), closes.shape[0], request_id)
            # An AllocateResponse by construction (tests check it against the schema): built as JSON here, FastAPI
            # would otherwise validate and serialise it through the response model again on every request.
            return JSONResponse(
                {
                    "weights": dict(zip(info.assets, weights)),
                    "agent": agent,
                    "model_version": info.model_version,
                    "request_id": request_id,
                    "fallback": agent != chosen,
                }
            )
        latency_ms = (time.perf_counter() - started) * 1000
        failed = Assignment(**logged, arm="", weights=(), latency_ms=latency_ms, errors=failures)
        self.writer.enqueue(failed, wait=False)  # counts against the routed arm's error rate
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
            rl_arms = [name for name in self.router.by_share() if self.infos[name].kind == "rl"]
            if not rl_arms:
                raise problem(422, "header.X-Agent", "the traffic split has no RL agent; name one in X-Agent")
            agent = self._choose(None, None).arm
            agent = agent if agent in rl_arms else rl_arms[0]
        else:
            agent = self._choose(None, x_agent).arm
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

    @api.post("/feedback", response_model=FeedbackResponse, responses={401: {}, 404: {}, 422: {}, 503: {}})
    async def feedback(
        self, body: FeedbackRequest, authorization: str | None = Header(default=None)
    ) -> FeedbackResponse:
        """Report the realised portfolio return of an earlier ``/allocate`` answer (once per request id)."""
        authorize(self.token_sha256, authorization)
        status, agent = await self._durable(feedback=Feedback(body.request_id, body.realized_return))
        if status == "unknown":
            raise problem(404, "body.request_id", f"unknown request id '{body.request_id}'")
        if status == "duplicate":
            raise problem(404, "body.request_id", f"the return of request '{body.request_id}' was already reported")
        return FeedbackResponse(request_id=body.request_id, agent=agent)

    async def _ask_store(self, call: Awaitable[Any], fields: dict[str, str] | None = None) -> Any:
        """``call`` to the store; 503 if it does not answer, a 4xx naming the body field for a refused request (409
        when the request is well formed but the experiment's state forbids it)."""
        try:
            return await call
        except StoreUnavailable as exc:
            raise HTTPException(status_code=503, detail=f"experiment store unavailable ({exc}); retry") from None
        except StoreRefused as exc:
            conflict = any(words in exc.message for words in CONFLICTS)
            raise problem(
                409 if conflict else 422, f"body.{(fields or {}).get(exc.field, exc.field)}", exc.message
            ) from None

    @api.get("/ab/stats", response_model=ABStatsResponse, responses={401: {}, 503: {}})
    async def ab_stats(self, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """The running experiment: per-arm counts, latency, realised returns, each challenger against the control
        with the always-valid sequential test (and Welch's fixed-horizon test for reference), the sample-ratio test.
        Every acknowledged answer and feedback is in it."""
        authorize(self.token_sha256, authorization)
        return await self._ask_store(self.store.summary())

    # -- the admin API: always behind the bearer token ------------------------------------------------------------

    @api.get("/ab/experiment", response_model=ExperimentView, responses={401: {}, 403: {}, 503: {}})
    async def ab_experiment(self, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """The experiment's config, its state (rollbacks, ramp steps, promotion, pause) and every decision with its
        reason and source."""
        authorize_admin(self.token_sha256, authorization)
        return await self._ask_store(self.store.describe())

    async def _admin(self, decision: str, call: Awaitable[Router], fields: dict[str, str] | None = None) -> dict:
        router = await self._ask_store(call, fields)  # this replica routes by it at once; the others within 0.25 s
        return {
            "experiment": router.experiment,
            "split_version": router.version,
            "shares": router.shares,
            "decision": decision,
        }

    @api.put("/ab/split", response_model=RoutingView, responses={401: {}, 403: {}, 409: {}, 422: {}, 503: {}})
    async def ab_split(self, body: SplitRequest, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """Set the shares now (arms left out get 0); pauses automatic ramp steps and bandit moves."""
        authorize_admin(self.token_sha256, authorization)
        return await self._admin("set_split", self.store.set_split(body.shares, body.reason), {"split": "shares"})

    @api.post("/ab/promote", response_model=RoutingView, responses={401: {}, 403: {}, 409: {}, 422: {}, 503: {}})
    async def ab_promote(self, body: ArmRequest, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """All traffic to one arm; the experiment ends."""
        authorize_admin(self.token_sha256, authorization)
        return await self._admin("promote", self.store.promote(body.arm, body.reason))

    @api.post("/ab/rollback", response_model=RoutingView, responses={401: {}, 403: {}, 422: {}, 503: {}})
    async def ab_rollback(
        self, body: RollbackRequest, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        """Stop a challenger (every challenger when ``arm`` is null): its traffic goes to the control."""
        authorize_admin(self.token_sha256, authorization)
        return await self._admin("rollback", self.store.rollback(body.arm, body.reason))

    @api.post("/ab/ramp", response_model=RoutingView, responses={401: {}, 403: {}, 409: {}, 422: {}, 503: {}})
    async def ab_ramp(self, body: RampRequest, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """Move a challenger to a ramp step (``arm`` and ``step``: pauses automatic steps) or ``resume`` them."""
        authorize_admin(self.token_sha256, authorization)
        if body.resume:
            if body.arm is not None or body.step is not None:
                raise problem(422, "body.resume", "resume takes no arm or step")
            return await self._admin("resume", self.store.resume(body.reason))
        if body.arm is None or body.step is None:
            raise problem(422, "body.step", "give arm and step (an index of ramp.steps), or resume: true")
        return await self._admin("ramp", self.store.ramp(body.arm, body.step, body.reason))

    @api.get("/metrics", response_class=PlainTextResponse)
    async def metrics(self, authorization: str | None = Header(default=None)) -> PlainTextResponse:
        """This app's Prometheus series (also scraped directly from Ray's metrics port, see the README)."""
        authorize(self.token_sha256, authorization)
        return PlainTextResponse(await scrape_node_series(METRIC_PREFIX))
