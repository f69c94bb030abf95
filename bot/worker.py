"""The background duties every bot process runs, in loops that survive Redis outages:

- recovery: threads whose inbox waits and whose owner's lease ran out (a dead process) are taken over;
  threads left waiting because their worker was busy are taken by any worker with room;
- cases left pending by a failure between a freeze and its numbering are numbered (and posted to the
  platform's moderators) within seconds of Redis answering again;
- notices other processes queued for this platform (a dashboard reopen) are carried out;
- community settings saved on the dashboard are applied (a look at their revision counter each pass).

Each loop only acts for the platforms that registered a delivery sink in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.backoff import ModelBackoff
from bot.case_filing import CaseFiling
from bot.errors import ThreadguardError
from bot.pipeline import TurnPipeline
from bot.store import ClaimStatus
from bot.thread_notices import ThreadNotices
from bot.types import ThreadRef
from config.settings import WorkerSettings

log = logging.getLogger(__name__)

#: A pending case younger than this is left to the turn that wrote it.
PENDING_MIN_AGE = 10.0


class Worker:
    """Starts and stops the loops; ``recover_once``/``file_pending_once``/``relay_notices_once`` are the
    single passes (tests call them directly)."""

    def __init__(self, pipeline: TurnPipeline, backoff: ModelBackoff, case_filing: CaseFiling,
                 notices: ThreadNotices, settings: WorkerSettings, *,
                 settings_sync: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.pipeline = pipeline
        self.backoff = backoff
        self.case_filing = case_filing
        self.notices = notices
        self.settings = settings
        self._settings_sync = settings_sync
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        s = self.settings
        self._tasks = [
            asyncio.create_task(self._loop("recovery", self.recover_once, s.recovery_interval),
                                name="threadguard recovery"),
            asyncio.create_task(self._loop("pending cases", self.file_pending_once, s.maintenance_interval),
                                name="threadguard pending cases"),
            asyncio.create_task(self._loop("notices", self.relay_notices_once, s.notice_interval),
                                name="threadguard notices"),
        ]
        if self._settings_sync is not None:
            self._tasks.append(asyncio.create_task(
                self._loop("community settings", self.sync_settings_once, s.settings_interval),
                name="threadguard community settings"))

    async def stop(self, grace: float | None = None) -> None:
        """Stop the loops, then let running turns finish (within the grace) and hand their leases back."""
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self.pipeline.stop(self.settings.shutdown_grace if grace is None else grace)

    async def _loop(self, name: str, step: Callable[[], Awaitable[int]], interval: float) -> None:
        # A flag as well as cancel(): a cancellation inside a Redis call can come back as a connection error.
        unreachable = False
        while not self._stopping:
            try:
                await step()
                if unreachable:
                    log.info("the %s loop reaches the store again", name)
                    unreachable = False
            except ThreadguardError as exc:
                if not unreachable:
                    log.warning("the %s loop could not reach the store (%s); trying again", name,
                                type(exc).__name__)
                unreachable = True
            except Exception:
                log.exception("the %s loop failed; trying again", name)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(interval)

    # --- single passes -------------------------------------------------------------------------

    async def sync_settings_once(self) -> int:
        """Apply settings saved since the last pass; returns 1 when they were reloaded."""
        return int(await self._settings_sync()) if self._settings_sync is not None else 0

    async def recover_once(self) -> int:
        """Take over due threads of this process's platforms; returns how many were taken."""
        pipeline, store = self.pipeline, self.pipeline.store
        taken = 0
        await self.backoff.refresh()
        if self.backoff.holding() is not None:  # the threads waiting are due when it ends
            return 0
        for platform in pipeline.platforms:
            if not pipeline.has_capacity():
                break
            for key, score in await store.due_threads(platform, int(time.time() * 1000),
                                                       self.settings.recovery_batch):
                if pipeline.is_draining(key):
                    continue
                if not pipeline.has_capacity():
                    break
                try:
                    thread = ThreadRef.from_key(key)
                except ValueError:
                    continue
                status = await pipeline.take_over(thread)
                if status is ClaimStatus.EMPTY:
                    await store.forget_due(thread, score)
                elif status is ClaimStatus.OWNER:
                    taken += 1
                    pipeline.metrics.lease_takeover()
        if pipeline.over_capacity:
            log.warning("over capacity: %d message(s) accepted while %d thread(s) ran here; they wait in "
                        "Redis for any worker", pipeline.over_capacity, pipeline.active)
            pipeline.over_capacity = 0
        return taken

    async def file_pending_once(self) -> int:
        """Number cases left pending; post each to its platform's moderators when this process can."""
        filed = await self.case_filing.reconcile(min_age=PENDING_MIN_AGE, scan=False)
        for case in filed:
            sink = self.pipeline.sink(case.platform)
            if sink is None:
                continue
            try:
                await sink.case(case)
            except Exception as exc:
                log.warning("case %s of %s: posting it failed (%s)", case.case_id, case.community,
                            type(exc).__name__)
        return len(filed)

    async def relay_notices_once(self) -> int:
        """Carry out the notices queued for this process's platforms; returns how many."""
        done = 0
        for platform in self.pipeline.platforms:
            sink = self.pipeline.sink(platform)
            assert sink is not None
            for notice in await self.notices.pop_notices(platform):
                try:
                    await sink.notice(notice)
                except Exception:
                    log.exception("thread %s: the %s notice (case %s) failed", notice.thread.key, notice.action,
                                  notice.case_id)
                else:
                    log.info("thread %s: %s notice carried out (case %s)", notice.thread.key, notice.action,
                             notice.case_id)
                done += 1
        return done
