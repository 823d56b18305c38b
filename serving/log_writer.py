"""Group commit to the experiment log for one ingress replica: rows queued while a batch is being written join the
next one, and a request is acknowledged only once its row is committed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from experiments.log_schema import Assignment, Feedback, Scores
from experiments.log_store import ExperimentLog

log = logging.getLogger(__name__)

LOG_TIMEOUT_S = 15.0  # longer than SQLite's busy timeout (10 s): a write that waits on a lock answers, not a 503


class LogUnavailable(Exception):
    """The log did not take a row within ``LOG_TIMEOUT_S``: the request it belongs to is not acknowledged."""


class LogWriter:
    """Writes ``Assignment`` and ``Feedback`` rows to ``log`` in batches, one transaction each, from one task."""

    def __init__(self, log_: ExperimentLog) -> None:
        self.log = log_
        self._queue: list[tuple[Assignment | None, Scores | None, Feedback | None, asyncio.Future | None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def pending(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        """Start the writing task on the running loop unless it runs already."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write_forever())

    def enqueue(
        self,
        assignment: Assignment | None = None,
        feedback: Feedback | None = None,
        *,
        scores: Scores | None = None,
        wait: bool = True,
    ) -> asyncio.Future | None:
        """Queue a row for the next commit; with ``wait``, a future that resolves once it is durable (to the
        feedback's status, see ``ExperimentLog.append``)."""
        self.start()
        future = asyncio.get_running_loop().create_future() if wait else None
        self._queue.append((assignment, scores, feedback, future))
        self._wake.set()
        return future

    async def durable(
        self, assignment: Assignment | None = None, feedback: Feedback | None = None, scores: Scores | None = None
    ) -> Any:
        """Queue rows and wait until they are committed; ``LogUnavailable`` if that takes over ``LOG_TIMEOUT_S``."""
        try:
            async with asyncio.timeout(LOG_TIMEOUT_S):
                return await self.enqueue(assignment, feedback, scores=scores)
        except Exception as exc:
            raise LogUnavailable(type(exc).__name__) from exc

    async def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the queued rows to be written (a replica shutting down)."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._queue:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            log.warning("shutting down: %d experiment log rows not written", len(self._queue))

    async def _write_forever(self) -> None:
        """Write everything queued in one transaction, wake its waiters, repeat."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                rows = [a for a, _, _, _ in batch if a is not None]
                scores = [s for _, s, _, _ in batch if s is not None]
                feedback = [f for _, _, f, _ in batch if f is not None]
                try:
                    statuses = await asyncio.to_thread(self.log.append, rows, feedback, (), scores)
                except Exception as exc:
                    log.warning("experiment log write failed (%s: %s)", type(exc).__name__, exc)
                    for _, _, _, future in batch:
                        if future is not None and not future.done():
                            future.set_exception(exc)
                    continue
                answers = iter(statuses)
                for _, _, item, future in batch:
                    status = next(answers) if item is not None else None
                    if future is not None and not future.done():
                        future.set_result(status)
