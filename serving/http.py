"""The HTTP surface of the ingress: the FastAPI app (its body limit, its JSON bodies that name no key twice, its
422 shape), error details that name the field, bearer-token auth, and per-asset feedback in the agents' order. (An
``/allocate`` body becomes the arrays an agent takes in ``serving.universe``.)"""

# No "from __future__ import annotations": FastAPI resolves the exception handler's annotations.

import hashlib
import hmac
import json
from collections import Counter
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from jiter import from_json

from serving.schemas import FeedbackRequest

# 512 assets (MAX_ASSETS) x 300 closes, more than any routable strategy reads (an estimated baseline: 253), are
# 3.0 MB of JSON at Python's full float repr and 2.0 MB rounded to 6 decimals (docs/architecture.md, HTTP API).
MAX_BODY_BYTES = 4 << 20

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


class _Repeated(dict):
    """A JSON object that named some keys more than once (``json.loads`` keeps the last value of each)."""

    repeated: list[str] = []


def _object(pairs: list[tuple[str, Any]]) -> dict:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    value = _Repeated(value)
    value.repeated = sorted(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
    return value


class UniqueKeysRequest(Request):
    """A request whose JSON body names no key twice in an object, at the top or one level down (``prices``,
    ``weights``, ``asset_returns``): a 422 naming the field and the keys, rather than the last value silently."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            raw = await self.body()
            try:
                # jiter (pydantic's parser, in Rust) refuses a repeated key itself and read a 200-asset body (504 KB)
                # in 0.78 ms against json.loads' 4.35 ms, in-process. Whatever it refuses is read again by
                # json.loads, whose errors FastAPI and the checks below turn into the 422.
                self._json = from_json(raw, catch_duplicate_keys=True)
                return self._json
            except ValueError:
                pass
            self._json = body = json.loads(raw, object_pairs_hook=_object)
            nested = {f"body.{key}": value for key, value in body.items()} if isinstance(body, dict) else {}
            for field, value in {"body": body, **nested}.items():
                if isinstance(value, _Repeated):
                    refused = refusal(self)  # a caller the endpoint would not let in learns nothing of its body
                    raise refused or problem(422, field, f"names {value.repeated} more than once: name each key once")
        return self._json


class UniqueKeysRoute(APIRoute):
    def get_route_handler(self):
        handler = super().get_route_handler()

        async def unique_keys(request: Request):
            return await handler(UniqueKeysRequest(request.scope, request.receive))

        return unique_keys


api.router.route_class = UniqueKeysRoute  # every route the ingress declares on api


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
    refused = refusal(request)
    if refused is not None:
        return JSONResponse(
            status_code=refused.status_code, content={"detail": refused.detail}, headers=refused.headers
        )
    detail = [
        {"loc": [str(part) for part in error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


def refusal(request: Request) -> HTTPException | None:
    """The 401 (or 403) the endpoint of ``request`` would answer its caller, or ``None`` when it lets it in."""
    path = request.url.path
    if path in OPEN_PATHS:
        return None
    check = authorize_admin if path in ADMIN_PATHS else authorize
    try:
        check(getattr(request.app.state, "token_sha256", None), request.headers.get("authorization"))
    except HTTPException as refused:
        return refused
    return None


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
