"""Full information on the ingress: every other deployed agent scored on each answered request, after the answer
(``Scorer``), the rows that record them (``Scores``, and the shadow's own ``Assignment``), and the trading day each
request is for (``TradingDays``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import numpy as np

from experiments.log_schema import Assignment, Scores
from experiments.log_store import ExperimentLog
from quant.registry import make_baseline
from quant.strategies import History
from serving.http import problem
from serving.universe import can_allocate

CLIENT_DAYS = 100_000  # clients whose latest trading day a replica remembers (older ones are read from the log)
LOCAL_BASELINES = ("equal_weight",)  # stateless baselines scored in the ingress itself (the registry's own code)
SETTLE_S = 5.0  # the longest a report waits for its request's scores


class Scorer:
    """Scores every deployed agent but the one that answered on each answered request, once the answer is on its
    way: the client never waits for it. Remote agents are called through ``callers`` (batched: many requests per
    call), stateless baselines computed here; the ``Scores`` row (and the shadow's row) is written when all are in.
    ``settled`` lets a report on the request wait for them, so per-asset feedback always finds its scores.

    Only requests over the app's assets (its agents' training assets) are scored, by every agent that can allocate
    them: per-asset feedback prices those assets, and the paired statistics compare arms on requests every arm can
    answer. A request over other assets (an asset-shared agent's transfer, ``serving.universe``) is answered and
    logged, not scored; its report is a ``realized_return``.

    :param call: the ingress's ``_call(agent, endpoint, awaitable)``, which counts failures and latency per agent.
    """

    def __init__(self, infos: dict, callers: dict, call, writer, cost_rate: float) -> None:
        self.infos, self.callers, self.call, self.writer, self.cost_rate = infos, callers, call, writer, cost_rate
        self.assets = assets = next(iter(infos.values())).assets
        self.local = {name: make_baseline(name, assets) for name in LOCAL_BASELINES if name in infos}
        self.pending: dict[str, asyncio.Task] = {}

    def start(
        self,
        answer: Assignment,
        weights: Sequence[float],
        request: tuple,
        as_of: str,
        shadow: str | None,
        assets: Sequence[str] | None = None,
    ) -> None:
        """Score ``answer``'s request (``(closes, held)`` over ``assets``, default the app's) in the background."""
        if assets is not None and tuple(assets) != tuple(self.assets):
            return  # over other assets than the app's: not scored (see the class docstring)
        task = asyncio.get_running_loop().create_task(self._score(answer, weights, request, as_of, shadow))
        self.pending[answer.request_id] = task
        task.add_done_callback(lambda _: self.pending.pop(answer.request_id, None))

    async def settled(self, request_id: str) -> None:
        """Wait (up to ``SETTLE_S``) until this replica has logged the request's scores, if it is scoring it."""
        task = self.pending.get(request_id)
        if task is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(SETTLE_S):
                    await asyncio.shield(task)

    async def drain(self, timeout_s: float) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*self.pending.values(), return_exceptions=True)

    async def _score(self, answer: Assignment, weights, request, as_of: str, shadow: str | None) -> None:
        closes, held = request
        names = [
            name
            for name, info in self.infos.items()
            if name != answer.arm and info.closes_needed <= closes.shape[0] and can_allocate(info, self.assets)
        ]
        scored = {answer.arm: tuple(weights)}
        history = [History(closes, held, np.zeros(0, dtype=np.float32))]
        latencies = {}
        for name in (n for n in names if n in self.local):
            started = time.perf_counter()
            scored[name] = tuple(self.local[name].weights_batch(history)[0].tolist())
            latencies[name] = (time.perf_counter() - started) * 1000
        remote = [n for n in names if n not in self.local]
        results = await asyncio.gather(
            *(timed(self.call(n, "score", self.callers[n](request))) for n in remote), return_exceptions=True
        )
        for name, result in zip(remote, results):
            if not isinstance(result, BaseException):  # a failed score is counted in call, and left out
                scored[name], latencies[name] = tuple(result[0]), result[1]
        versions = {n: self.infos[n].model_version for n in scored}
        try:
            await self.writer.durable(scores=scores_row(answer, as_of, held, self.cost_rate, scored, versions))
        except Exception:
            return  # the log is down: the request stays unscored (a report on it is refused, named)
        if shadow is not None and shadow in latencies:
            version = self.infos[shadow].model_version
            self.writer.enqueue(shadow_row(answer, shadow, scored[shadow], latencies[shadow], version), wait=False)


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
