"""The A/B statistics and the admin API of the ingress (``ExperimentRoutes``, a base of ``serving.ingress.Ingress``):
each a call to the experiment store (``serving.store_client``), whose refusals become 4xx naming the body field.
The admin API is always behind the bearer token."""

# No "from __future__ import annotations": FastAPI must resolve the endpoint annotations at class creation.

from collections.abc import Awaitable
from typing import Any

from fastapi import Header, HTTPException

from experiments.router import Router
from serving.http import api, authorize, authorize_admin, problem
from serving.schemas import (
    ABStatsResponse,
    ArmRequest,
    ExperimentView,
    RampRequest,
    RollbackRequest,
    RoutingView,
    SplitRequest,
)
from serving.store_client import StoreClient, StoreRefused, StoreUnavailable

CONFLICTS = ("rolled back", "was promoted", "routes by")  # ExperimentRunner refusals that are 409, not 422


class ExperimentRoutes:
    """``/ab/stats`` and the admin API; Serve finds these routes on ``Ingress`` through its MRO."""

    store: StoreClient
    token_sha256: str | None

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
