"""An ingress replica's side of the experiment store (``serving.deployments.StatsStore``): typed calls for the
statistics and the admin API, and the routing the replica follows, kept current in the background.

The store answers plain dicts (a ``ConfigError`` raised in it would reach the caller wrapped in Ray's own
exception); a refusal comes back as ``{"error": {"field", "message"}}`` and is raised here as ``StoreRefused``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from experiments.router import Router
from experiments.runner import NOT_CONFIGURED

log = logging.getLogger(__name__)

STORE_TIMEOUT_S = 15.0  # the store may write a decision to the log before it answers
REFRESH_S = 0.25  # how often a replica asks for the current split (and records its Prometheus series)


class StoreUnavailable(Exception):
    """The store did not answer (restarting, or overloaded)."""


class StoreStarting(StoreUnavailable):
    """The store restarted and no replica has configured its experiment yet (the refresher does that next)."""


class StoreRefused(Exception):
    """A well-formed request the experiment refused: ``field`` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


class StoreClient:
    """Calls to the store from one ingress replica, and the ``Router`` built from the routing it gives.

    :param handle: the store's deployment handle.
    :param known: every deployed agent (a routing naming another is refused by ``Router``).
    """

    def __init__(self, handle: Any, known: set[str]) -> None:
        self.handle = handle
        self.known = set(known)
        self.router: Router | None = None
        self.settings: dict[str, Any] = {}
        self._refresher: asyncio.Task | None = None

    # -- routing ---------------------------------------------------------------------------------------------------

    def use(self, routing: Mapping[str, Any]) -> Router:
        """Route by ``routing`` unless this replica already has that version or a newer one of the experiment."""
        router = self.router
        if router is None or routing["experiment"] != router.experiment or routing["version"] > router.version:
            self.router = Router(dict(routing), self.known)
            log.info("routing %s version %s: %s", self.router.experiment, self.router.version, self.router.shares)
        return self.router

    async def configure(self, settings: dict[str, Any]) -> Router:
        """Hand the store the ingress ``user_config``; route by what it answers."""
        self.settings = settings
        return self.use(await self._call(lambda h: h.configure.remote(settings)))

    def keep_current(self, every_refresh: Callable[[], None]) -> None:
        """Ask the store for the routing every ``REFRESH_S`` (reconfiguring a restarted store), calling
        ``every_refresh`` each time; started once per replica."""
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever(every_refresh))

    async def _refresh_forever(self, every_refresh: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                every_refresh()
            except Exception:  # a batch of Prometheus records is lost; the experiment log is not
                log.exception("recording the Prometheus series failed")
            try:
                try:
                    routing = await self._call(lambda h: h.routing.remote())
                except StoreStarting:
                    routing = await self._call(lambda h: h.configure.remote(self.settings))
                self.use(routing)
            except Exception as exc:
                log.warning("experiment store unavailable (%s); routing by the split it gave last", type(exc).__name__)

    # -- statistics and the admin API -------------------------------------------------------------------------------

    async def summary(self) -> dict[str, Any]:
        return await self._call(lambda h: h.summary.remote())

    async def describe(self) -> dict[str, Any]:
        return await self._call(lambda h: h.describe.remote())

    async def set_split(self, shares: Mapping[str, float], reason: str) -> Router:
        return self.use(await self._call(lambda h: h.set_split.remote(dict(shares), reason)))

    async def promote(self, arm: str, reason: str) -> Router:
        return self.use(await self._call(lambda h: h.promote.remote(arm, reason)))

    async def rollback(self, arm: str | None, reason: str) -> Router:
        return self.use(await self._call(lambda h: h.rollback.remote(arm, reason)))

    async def ramp(self, arm: str, step: int, reason: str) -> Router:
        return self.use(await self._call(lambda h: h.ramp.remote(arm, step, reason)))

    async def resume(self, reason: str) -> Router:
        return self.use(await self._call(lambda h: h.resume.remote(reason)))

    async def _call(self, call: Callable[[Any], Any]) -> dict[str, Any]:
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                answer = await call(self.handle)
        except Exception as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        if "error" in answer:
            field, message = answer["error"]["field"], answer["error"]["message"]
            if field == NOT_CONFIGURED:
                raise StoreStarting(message)
            raise StoreRefused(field, message)
        return answer
