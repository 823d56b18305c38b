"""The A/B ingress: the HTTP routes of a FastAPI app inside a Serve deployment. Each request is routed to an arm by
the running experiment's layout, validated against it and answered by it (concurrent calls per agent batched),
with a fallback on failure. Every other deployed agent (the other arms, the shadow, the routable baselines) is then
scored on the same request, after the answer (``serving.scoring``; full information: with the period's per-asset
returns, every agent's net return on it is known). Answers and feedback are logged durably before they are acknowledged
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

from fastapi import Header, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve

from core.errors import ConfigError
from experiments.log_schema import Assignment, Feedback, Scores
from experiments.log_store import ExperimentLog
from experiments.router import Route, Router, UnknownAgent
from serving.agents import AgentInfo
from serving.batching import batched_caller, scoring_caller
from serving.http import api, authorize, authorize_admin, parse_asset_returns, problem
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
from serving.scoring import Scorer, TradingDays
from serving.store_calls import admin_view, ask_store
from serving.store_client import StoreClient, StoreRefused
from serving.universe import can_allocate, parse_allocation

log = logging.getLogger(__name__)

AGENT_TIMEOUT_S = 5.0
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
        log_url: str = "sqlite:///runs/experiments.db",
        cost_bps: float = 10.0,
    ) -> None:
        """:param cost_bps: the proportional cost the served agents trained with: charged to every scored agent's
        turnover from the weights a request held, when its per-asset returns come back."""
        from ray.serve import metrics

        api.state.token_sha256 = token_sha256  # checked before the body is validated (serving.http)
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
        self.cost_rate = cost_bps / 1e4
        self.assets = next(iter(self.infos.values())).assets  # every deployed agent trades the same assets
        self.trading_days = TradingDays(self.writer.log)
        callers = {name: scoring_caller(handle) for name, handle in self.handles.items()}
        self.scorer = Scorer(self.infos, callers, self._call, self.writer, self.cost_rate)

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
        await self.scorer.drain(1.0)
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

    async def _durable(
        self, assignment: Assignment | None = None, feedback: Feedback | None = None, scores: Scores | None = None
    ) -> Any:
        try:
            return await self.writer.durable(assignment, feedback, scores)
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

    def _candidates(self, first: str, n_closes: int, assets: tuple[str, ...]) -> list[str]:
        """The routed agent (tried twice), then the other arms by traffic weight, then the baseline fallback; only
        agents that can use ``n_closes`` closes of ``assets``."""
        others = [name for name in self.router.by_share() if name != first]
        tail = [self.fallback] if self.fallback not in (first, *others) else []
        able = [n for n in (*others, *tail) if self.infos[n].closes_needed <= n_closes]
        return [first, first] + [n for n in able if can_allocate(self.infos[n], assets)]

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
        closes, held, assets = parse_allocation(body, self.infos[chosen])  # its own assets, or the request's
        as_of = await self.trading_days.check(body.as_of, body.client_id)
        request_id = uuid.uuid4().hex
        logged = {  # what the log records of this request, whichever agent answers it
            "request_id": request_id,
            "experiment": router.experiment,
            "routed_arm": chosen,
            "split_version": router.version,
            "client_id": body.client_id or "",
            "forced": route.forced,
        }
        request = (closes, held)
        failures = 0
        for agent in self._candidates(chosen, closes.shape[0], assets):
            try:
                weights = await self._call(agent, "allocate", self._allocate[agent](request))
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
            self.scorer.start(row, weights, request, as_of, router.shadow, assets)  # the others, after the answer
            # An AllocateResponse by construction (tests check it against the schema): built as JSON here, FastAPI
            # would otherwise validate and serialise it through the response model again on every request.
            return JSONResponse(
                {
                    "weights": dict(zip(assets, weights)),
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
        """Report what an earlier ``/allocate`` answer's period earned, once per request id: ``asset_returns`` (every
        agent scored on the request is then compared, paired) or ``realized_return`` (the answering agent only)."""
        authorize(self.token_sha256, authorization)
        asset_returns = parse_asset_returns(body, self.assets)
        field = "body.asset_returns" if asset_returns is not None else "body.realized_return"
        await self.scorer.settled(body.request_id)  # its scores, when this replica is still scoring it
        report = Feedback(body.request_id, body.realized_return, asset_returns)
        status, agent = await self._durable(feedback=report)
        for _ in range(20):  # scored by another replica, whose row may be a moment behind
            if status != "unscored":
                break
            await asyncio.sleep(0.05)
            status, agent = await self._durable(feedback=report)
        if status == "unknown":
            raise problem(404, "body.request_id", f"unknown request id '{body.request_id}'")
        if status == "duplicate":
            raise problem(
                409, field, f"request '{body.request_id}' already has a different report; the first one stands"
            )
        if status == "unscored":
            raise problem(
                422,
                field,
                f"request '{body.request_id}' has no scores (answered before per-asset scoring); send realized_return",
            )
        return FeedbackResponse(request_id=body.request_id, agent=agent)

    @api.get("/ab/stats", response_model=ABStatsResponse, responses={401: {}, 503: {}})
    async def ab_stats(self, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """The running experiment: per-arm counts, latency, realised returns, each challenger against the control
        with the always-valid sequential test (and Welch's fixed-horizon test for reference), the sample-ratio test.
        Every acknowledged answer and feedback is in it."""
        authorize(self.token_sha256, authorization)
        return await ask_store(self.store.summary())

    # -- the admin API: always behind the bearer token ------------------------------------------------------------

    @api.get("/ab/experiment", response_model=ExperimentView, responses={401: {}, 403: {}, 503: {}})
    async def ab_experiment(self, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """The experiment's config, its state (rollbacks, ramp steps, promotion, pause) and every decision with its
        reason and source."""
        authorize_admin(self.token_sha256, authorization)
        return await ask_store(self.store.describe())

    @api.put("/ab/split", response_model=RoutingView, responses={401: {}, 403: {}, 409: {}, 422: {}, 503: {}})
    async def ab_split(self, body: SplitRequest, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """Set the shares now (arms left out get 0); pauses automatic ramp steps and bandit moves."""
        authorize_admin(self.token_sha256, authorization)
        return await admin_view("set_split", self.store.set_split(body.shares, body.reason), {"split": "shares"})

    @api.post("/ab/promote", response_model=RoutingView, responses={401: {}, 403: {}, 409: {}, 422: {}, 503: {}})
    async def ab_promote(self, body: ArmRequest, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """All traffic to one arm; the experiment ends."""
        authorize_admin(self.token_sha256, authorization)
        return await admin_view("promote", self.store.promote(body.arm, body.reason))

    @api.post("/ab/rollback", response_model=RoutingView, responses={401: {}, 403: {}, 422: {}, 503: {}})
    async def ab_rollback(
        self, body: RollbackRequest, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        """Stop a challenger (every challenger when ``arm`` is null): its traffic goes to the control."""
        authorize_admin(self.token_sha256, authorization)
        return await admin_view("rollback", self.store.rollback(body.arm, body.reason))

    @api.post("/ab/ramp", response_model=RoutingView, responses={401: {}, 403: {}, 409: {}, 422: {}, 503: {}})
    async def ab_ramp(self, body: RampRequest, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """Move a challenger to a ramp step (``arm`` and ``step``: pauses automatic steps) or ``resume`` them."""
        authorize_admin(self.token_sha256, authorization)
        if body.resume:  # RampRequest checked that it came alone, and that arm and step came together otherwise
            return await admin_view("resume", self.store.resume(body.reason))
        return await admin_view("ramp", self.store.ramp(body.arm, body.step, body.reason))

    @api.get("/metrics", response_class=PlainTextResponse)
    async def metrics(self, authorization: str | None = Header(default=None)) -> PlainTextResponse:
        """This app's Prometheus series (also scraped directly from Ray's metrics port, see the README)."""
        authorize(self.token_sha256, authorization)
        return PlainTextResponse(await scrape_node_series(METRIC_PREFIX))
