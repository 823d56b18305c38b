"""The A/B statistics and admin routes' calls to the experiment store (``serving.store_client``): a store that does
not answer is a 503, a refused request a 4xx naming the body field (409 when the request is well formed but the
experiment's state forbids it)."""

# No "from __future__ import annotations": FastAPI resolves the routes' annotations (serving.ingress).

from collections.abc import Awaitable
from typing import Any

from fastapi import HTTPException

from experiments.router import Router
from serving.http import problem
from serving.store_client import StoreRefused, StoreUnavailable

CONFLICTS = ("rolled back", "was promoted", "routes by")  # ExperimentRunner refusals that are 409, not 422


async def ask_store(call: Awaitable[Any], fields: dict[str, str] | None = None) -> Any:
    """``call``'s answer; ``fields`` renames the store's field names to the request body's."""
    try:
        return await call
    except StoreUnavailable as exc:
        raise HTTPException(status_code=503, detail=f"experiment store unavailable ({exc}); retry") from None
    except StoreRefused as exc:
        conflict = any(words in exc.message for words in CONFLICTS)
        raise problem(
            409 if conflict else 422, f"body.{(fields or {}).get(exc.field, exc.field)}", exc.message
        ) from None


async def admin_view(decision: str, call: Awaitable[Router], fields: dict[str, str] | None = None) -> dict[str, Any]:
    """An admin decision's answer (``RoutingView``): the routing it made, which this replica follows at once and the
    others within a poll (0.25 s)."""
    router = await ask_store(call, fields)
    return {
        "experiment": router.experiment,
        "split_version": router.version,
        "shares": router.shares,
        "decision": decision,
    }
