"""Coalescing one ingress replica's concurrent ``/allocate`` calls for an agent into one call to its deployment."""

from collections.abc import Awaitable, Callable

import numpy as np
from ray import serve

Request = tuple[np.ndarray, np.ndarray]  # (closes (T, K), held weights (K,))


def batched_caller(handle) -> Callable[[Request], Awaitable[list[float]]]:
    """``allocate(request)`` for the agent behind ``handle``: this replica's concurrent requests travel to its
    deployment in one call and one forward pass.

    Each call between replicas costs far more CPU than a forward pass (benchmarks/serve_load.py at 32 concurrent:
    310 req/s with batching in the agent replica only, 440-580 req/s batching here), so batching where the
    requests arrive saves both ends. A request that finds none in flight for its agent goes straight to the
    handle (``serve.batch``'s queue costs about a tenth of this replica's CPU per request when alone); requests
    that arrive meanwhile ride in the next call, with up to two calls in flight per agent.
    """
    in_flight = 0

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0, max_concurrent_batches=2)
    async def batched(requests: list[Request]) -> list[list[float]]:
        return await handle.allocate.remote(requests)

    async def allocate(request: Request) -> list[float]:
        nonlocal in_flight
        in_flight += 1
        try:
            return (await handle.allocate.remote([request]))[0] if in_flight == 1 else await batched(request)
        finally:
            in_flight -= 1

    return allocate


def scoring_caller(handle, wait_s: float = 0.02) -> Callable[[Request], Awaitable[list[float]]]:
    """``score(request)`` for full-information scoring, which no client waits on: requests gather for up to
    ``wait_s`` (or 64 of them) and travel in one call, so a call's cost between replicas is shared by many."""

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=wait_s, max_concurrent_batches=2)
    async def batched(requests: list[Request]) -> list[list[float]]:
        return await handle.allocate.remote(requests)

    return batched
