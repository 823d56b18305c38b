"""Requests to the Serve app, and the A/B app the experiment tests deploy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.markets import ASSETS, TinyMarket
from tests.support.paths import free_port

TOKEN = "admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def body(tiny: TinyMarket, day: int = 300, n: int = 30, weights=None, client_id=None) -> dict:
    """An ``/allocate`` body: ``n`` closes of the tiny market up to ``day``."""
    closes = tiny.market.closes[day - n + 1 : day + 1]
    out = {"prices": {a: closes[:, k].tolist() for k, a in enumerate(ASSETS)}}
    if weights is not None:
        out["weights"] = dict(zip(ASSETS, weights))
    if client_id is not None:
        out["client_id"] = client_id
    return out


def allocate_many(app: str, payloads: list[dict], headers: dict | None = None, concurrency: int = 16) -> list:
    """POST every payload to ``app``/allocate, ``concurrency`` at a time; the responses in order."""

    async def run() -> list[httpx.Response]:
        limit = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=app, timeout=30) as http:

            async def one(payload):
                async with limit:
                    return await http.post("/allocate", json=payload, headers=headers)

            return await asyncio.gather(*(one(p) for p in payloads))

    return asyncio.run(run())


@contextmanager
def ab_app(
    models: Path, log_url: str, *, name: str = "ab", split: dict[str, float] | None = None
) -> Iterator[tuple[str, str, Callable[[], None]]]:
    """The A/B app ``name`` (``split``, default PPO and DQN half and half; equal weight as fallback; two ingress
    replicas; the bearer token ``SERVE_API_TOKEN`` as the caller set it, or none) with its experiment
    log at ``log_url``, served on a free port: ``(base URL, log URL, redeploy)`` where ``redeploy()`` deletes the
    whole app and deploys it again. Serve is shut down afterwards."""
    from ray import serve

    from serving.builder import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {
        "models_dir": str(models),
        "split": split or {"ppo": 0.5, "dqn": 0.5},
        "baselines": ["equal_weight"],
        "ingress_replicas": 2,
        "experiment_log": log_url,
    }

    def deploy() -> None:
        serve.run(build_app(args), name=name, route_prefix="/")

    def redeploy() -> None:
        serve.delete(name)
        deploy()

    try:
        deploy()
        yield f"http://127.0.0.1:{port}", log_url, redeploy
    finally:
        serve.shutdown()


async def traffic(
    base: str,
    tiny: TinyMarket,
    n: int,
    *,
    prefix: str,
    during: Callable[[httpx.AsyncClient], Awaitable[None]] | None = None,
    concurrency: int = 8,
    headers: dict | None = None,
) -> dict:
    """``n`` allocate-then-feedback rounds from distinct clients, ``concurrency`` at a time, with ``during()``
    awaited once a third have been answered or have failed. Every acknowledged request id and feedback, and every
    failure."""
    headers = ADMIN if headers is None else headers
    acknowledged, fed, failures = {}, set(), []
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int, http: httpx.AsyncClient) -> None:
        async with limit:
            try:
                answer = await http.post("/allocate", json=body(tiny, client_id=f"{prefix}-{i}"), headers=headers)
            except httpx.HTTPError as exc:
                failures.append(f"allocate: {type(exc).__name__}")
                return
            if answer.status_code != 200:
                failures.append(f"allocate: {answer.status_code}")
                return
            request_id = answer.json()["request_id"]
            acknowledged[request_id] = answer.json()["agent"]
            try:
                reply = await http.post(
                    "/feedback", json={"request_id": request_id, "realized_return": 0.001}, headers=headers
                )
            except httpx.HTTPError as exc:
                failures.append(f"feedback: {type(exc).__name__}")
                return
            if reply.status_code == 200:
                fed.add(request_id)
            else:
                failures.append(f"feedback: {reply.status_code}")

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        tasks = [asyncio.create_task(one(i, http)) for i in range(n)]
        if during is not None:
            # Failed allocations count too: a loop on answers alone never ends when every allocation fails.
            while len(acknowledged) + len(failures) < n // 3 and not all(t.done() for t in tasks):
                await asyncio.sleep(0.02)
            await during(http)
        await asyncio.gather(*tasks)
    return {"acknowledged": acknowledged, "fed": fed, "failures": failures}


def logged(log_url: str) -> tuple[set[str], set[str]]:
    """The request ids of the answers and of the feedback in the log."""
    from experiments.log_store import ExperimentLog

    contents = ExperimentLog(log_url).read()
    answered = {r["request_id"] for r in contents.assignments if r["kind"] == "answer" and r["arm"]}
    return answered, {r["request_id"] for r in contents.feedback}
