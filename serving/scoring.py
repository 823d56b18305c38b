"""Full information on the ingress: the rows that record every deployed agent's answer to a request (``Scores``,
and the shadow's own ``Assignment``), and the trading day each request is for (``TradingDays``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import numpy as np

from experiments.log_schema import Assignment, Scores
from experiments.log_store import ExperimentLog
from serving.http import problem

CLIENT_DAYS = 100_000  # clients whose latest trading day a replica remembers (older ones are read from the log)


async def timed(call: Awaitable[Any]) -> tuple[Any, float]:
    """``call``'s result and the milliseconds it took."""
    started = time.perf_counter()
    result = await call
    return result, (time.perf_counter() - started) * 1000


def scores_row(
    answer: Assignment,
    as_of: str,
    held: np.ndarray,
    cost_rate: float,
    weights: Mapping[str, Sequence[float]],
    versions: Mapping[str, str],
) -> Scores:
    """Every scored agent's weights on ``answer``'s request, with what pricing them needs (held weights, cost)."""
    return Scores(
        request_id=answer.request_id,
        experiment=answer.experiment,
        as_of=as_of,
        held=tuple(held.tolist()),
        cost_rate=cost_rate,
        weights={name: tuple(w) for name, w in weights.items()},
        versions=dict(versions),
        client_id=answer.client_id,
    )


def shadow_row(
    answer: Assignment, shadow: str, weights: Sequence[float], latency_ms: float, model_version: str
) -> Assignment:
    """The shadow agent's answer to ``answer``'s request (kind ``shadow``: its requests and latency in /ab/stats)."""
    return Assignment(
        request_id=f"{answer.request_id}:shadow",
        experiment=answer.experiment,
        routed_arm=shadow,
        arm=shadow,
        weights=tuple(weights),
        latency_ms=latency_ms,
        split_version=answer.split_version,
        model_version=model_version,
        kind="shadow",
    )


class TradingDays:
    """The trading day of each request: ``as_of`` as given (default the server's UTC date). A client's requests may
    not go back in time: the latest day of each is remembered (``CLIENT_DAYS`` of them; others read from the log)."""

    def __init__(self, log: ExperimentLog) -> None:
        self.log = log
        self._latest: OrderedDict[str, str] = OrderedDict()

    async def check(self, as_of: dt.date | None, client: str | None) -> str:
        """The request's trading day (ISO); a 422 naming ``body.as_of`` when ``client`` goes back in time."""
        day = (as_of or dt.datetime.now(dt.UTC).date()).isoformat()
        if not client:
            return day
        latest = self._latest.get(client)
        if latest is None:
            latest = await asyncio.to_thread(self.log.last_as_of, client)
        if latest is not None and day < latest:
            raise problem(
                422,
                "body.as_of",
                f"{day} is earlier than {latest}, the trading day of client '{client}'s previous request",
            )
        self._latest[client] = max(day, latest or day)
        self._latest.move_to_end(client)
        if len(self._latest) > CLIENT_DAYS:
            self._latest.popitem(last=False)
        return day
