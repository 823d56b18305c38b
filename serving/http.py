"""The HTTP surface of the ingress: the FastAPI app (its body limit and 422 shape), error details that name the
field, bearer-token auth, and turning an ``/allocate`` body into the arrays an agent takes."""

# No "from __future__ import annotations": FastAPI resolves the exception handler's annotations.

import hashlib
import hmac

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from serving.agents import AgentInfo
from serving.schemas import AllocateRequest, FeedbackRequest

MAX_BODY_BYTES = 1 << 20

api = FastAPI(
    title="rlportfolio",
    version="1.0",
    description=(
        "Portfolio allocation by RL agents with A/B routing. Send recent closes to `/allocate`; the `X-Agent` header "
        "forces an agent; `/feedback` reports realised returns, `/ab/stats` compares the arms. When the server has "
        "`SERVE_API_TOKEN`, every endpoint but `/health` needs `Authorization: Bearer <token>`."
    ),
    max_body_size=MAX_BODY_BYTES,  # 413 past it, counted as the body streams in (chunked bodies too)
)


def problem(status: int, field: str, message: str) -> HTTPException:
    """An HTTP error whose detail names the field, in FastAPI's own shape (``loc``, ``msg``)."""
    return HTTPException(status_code=status, detail=[{"loc": field.split("."), "msg": message}])


ADMIN_PATHS = ("/ab/experiment", "/ab/split", "/ab/promote", "/ab/rollback", "/ab/ramp")
OPEN_PATHS = ("/health", "/docs", "/openapi.json", "/redoc")


@api.exception_handler(RequestValidationError)
async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each bad field, but only for a caller the endpoint would let in: FastAPI validates the body before
    the endpoint runs (and checks the token), so a wrong or missing token is answered here first (401, or 403 for
    the admin API without a configured token), and nothing about the body is said to it. The offending input is
    left out of the 422: it may be NaN, which JSON cannot carry."""
    path = request.url.path
    if path not in OPEN_PATHS:
        token_sha256 = getattr(request.app.state, "token_sha256", None)
        check = authorize_admin if path in ADMIN_PATHS else authorize
        try:
            check(token_sha256, request.headers.get("authorization"))
        except HTTPException as refused:
            return JSONResponse(
                status_code=refused.status_code, content={"detail": refused.detail}, headers=refused.headers
            )
    detail = [
        {"loc": [str(part) for part in error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


def authorize(token_sha256: str | None, authorization: str | None) -> None:
    """Nothing without a configured token; else a 401 unless ``authorization`` is ``Bearer <the token>``."""
    if token_sha256 is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    given = hashlib.sha256(token.encode()).hexdigest()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given, token_sha256):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )


def authorize_admin(token_sha256: str | None, authorization: str | None) -> None:
    """The admin API: always behind the bearer token. Without a configured token, 403 saying how to enable it."""
    if token_sha256 is None:
        raise HTTPException(
            status_code=403,
            detail="the admin API needs a bearer token: start the server with SERVE_API_TOKEN set (AppArgs.token_env "
            "names the variable), then send Authorization: Bearer <token>",
        )
    authorize(token_sha256, authorization)


def parse_allocation(body: AllocateRequest, info: AgentInfo) -> tuple[np.ndarray, np.ndarray]:
    """``(closes (T, K), held (K,))`` for ``info``'s assets, in its order; a 422 naming the field otherwise."""
    assets = list(info.assets)
    missing = sorted(set(assets) - set(body.prices))
    unknown = sorted(set(body.prices) - set(assets))
    if missing or unknown:
        raise problem(422, "body.prices", f"assets must be exactly {assets}; missing {missing}, unknown {unknown}")
    closes = np.column_stack([np.asarray(body.prices[a], dtype=np.float64) for a in assets])
    if closes.shape[0] < info.closes_needed:
        raise problem(
            422,
            "body.prices",
            f"need at least {info.closes_needed} closes per asset (oldest first), got {closes.shape[0]}",
        )
    if body.weights is None:
        held = np.full(len(assets), 1.0 / len(assets))
    else:
        if set(body.weights) != set(assets):
            raise problem(422, "body.weights", f"weights must name exactly the assets {assets}")
        held = np.asarray([body.weights[a] for a in assets], dtype=np.float64)
    return closes, held


def parse_asset_returns(body: FeedbackRequest, assets: tuple[str, ...]) -> tuple[float, ...] | None:
    """``body.asset_returns`` in the agents' asset order (None for a scalar report); a 422 naming the field when it
    does not name exactly ``assets``, or when the body gives both kinds of report or neither."""
    if (body.realized_return is None) == (body.asset_returns is None):
        raise problem(422, "body.asset_returns", "give asset_returns (per asset) or realized_return, not both")
    if body.asset_returns is None:
        return None
    missing = sorted(set(assets) - set(body.asset_returns))
    extra = sorted(set(body.asset_returns) - set(assets))
    if missing or extra:
        raise problem(
            422, "body.asset_returns", f"needs exactly the assets {list(assets)}; missing {missing}, unknown {extra}"
        )
    return tuple(body.asset_returns[a] for a in assets)
