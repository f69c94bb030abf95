"""Work that runs after Slack got its acknowledgement: a bounded set of tasks, drained on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class OverCapacity(Exception):
    """Too many events in progress; the event is not acknowledged so Slack delivers it again later."""


class EventTasks:
    """At most ``max_pending`` accepted events, at most ``max_concurrent`` of them running."""

    def __init__(self, *, max_concurrent: int = 16, max_pending: int = 512) -> None:
        self._running = asyncio.Semaphore(max_concurrent)
        self._max_pending = max_pending
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Callable[[], Coroutine[Any, Any, None]], *, name: str) -> None:
        """Schedule ``work()``; raises ``OverCapacity`` (before creating the coroutine) when full."""
        if self._closed or len(self._tasks) >= self._max_pending:
            raise OverCapacity(f"{len(self._tasks)} events in progress")
        task = asyncio.create_task(self._run(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, work: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        async with self._running:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event task %s failed", name)

    async def drain(self, within: float | None = None) -> bool:
        """Wait until no task is left (tasks spawned meanwhile included); ``False`` on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        while self._tasks:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            await asyncio.wait(set(self._tasks), timeout=left)
            if deadline is not None and loop.time() >= deadline and self._tasks:
                return False
        return True

    async def aclose(self, grace: float) -> None:
        """Accept nothing more, let work in progress finish for ``grace`` seconds, cancel the rest."""
        self._closed = True
        if await self.drain(grace):
            return
        log.warning("cancelling %d event task(s) still running at shutdown", len(self._tasks))
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
