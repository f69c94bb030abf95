"""The background duties every bot process runs, in loops that survive Redis outages:

- recovery: threads whose inbox waits and whose owner's lease ran out (a dead process) are taken over;
  threads left waiting because their worker was busy are taken by any worker with room;
- cases left pending by a failure between a freeze and its numbering are numbered (and posted to the
  platform's moderators) within seconds of Redis answering again;
- notices other processes queued for this platform (a dashboard reopen) are carried out;
- community settings saved on the dashboard are applied (a look at their revision counter each pass).

Each loop only acts for the platforms that registered a delivery sink in this process.

An idle process sends Redis next to nothing: each loop sleeps until it has work. The recovery loop sleeps
until the first due time it read (every due set's first), the others until they are told; what gives a loop
work says so on the store's wake-up channel (``bot.store.wakeups``), which one task here listens to. While
a loop has work it looks again after its interval (``WorkerSettings``); whenever the channel is heard
(again) every loop looks once, and while it cannot be heard (Redis unreachable) they poll at their
intervals, as they would without it. A sweep every ``sweep_interval`` is the safety net.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bot.backoff import ModelBackoff
from bot.case_filing import CaseFiling
from bot.errors import ThreadguardError
from bot.pipeline import TurnPipeline
from bot.store import ClaimStatus, DueThreads, WakeUp, WakeUps, keys
from bot.thread_notices import ThreadNotices
from bot.types import ThreadRef
from config.settings import WorkerSettings

log = logging.getLogger(__name__)

#: A pending case younger than this is left to the turn that wrote it.
PENDING_MIN_AGE = 10.0
#: Queued notices carried out per platform and pass.
NOTICES_PER_PASS = 20
#: Seconds after a due time the recovery loop looks: a thread is due when its owner's lease could run out,
#: which the accepting script sets a moment after the due time was worked out.
DUE_MARGIN = 0.05


def _loop_time(epoch_ms: int) -> float:
    """The event loop's time of an epoch moment (milliseconds, as Redis holds due times)."""
    return asyncio.get_running_loop().time() + epoch_ms / 1000 - time.time()


class _Timer:
    """When one loop looks next: when asked to (by its own pass or a wake-up), never sooner than ``gap``
    after its last look, and at the latest a ``horizon`` after it (the sweep, or the polling interval while
    the wake-ups are not heard)."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self._at: float | None = None  # event-loop time asked for
        self._moved = asyncio.Event()

    def at(self, when: float) -> None:
        """Look at ``when`` (event-loop time), or sooner if already asked."""
        if self._at is None or when < self._at:
            self._at = when
            self._moved.set()

    def soon(self) -> None:
        self.at(asyncio.get_running_loop().time())

    def at_epoch_ms(self, ms: int) -> None:
        """Look at ``ms`` (epoch milliseconds, as Redis holds due times)."""
        self.at(_loop_time(ms))

    def nudge(self) -> None:
        """The horizon changed: work out the wait again."""
        self._moved.set()

    async def wait(self, last: float, horizon: Callable[[], float]) -> bool:
        """Until it is time; True when that is the horizon (nothing asked for sooner)."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            latest = last + horizon()
            when = latest if self._at is None else min(latest, self._at)
            when = max(when, last + self.gap)
            if now >= when:
                break
            self._moved.clear()
            try:
                async with asyncio.timeout(when - now):
                    await self._moved.wait()
            except TimeoutError:
                pass
        asked = self._at is not None and self._at <= loop.time()
        if asked:
            self._at = None
        return not asked


class Worker:
    """Starts and stops the loops; ``recover_once``/``file_pending_once``/``relay_notices_once`` are the
    single passes (tests call them directly)."""

    def __init__(self, pipeline: TurnPipeline, backoff: ModelBackoff, case_filing: CaseFiling,
                 notices: ThreadNotices, settings: WorkerSettings, *,
                 settings_sync: Callable[[], Awaitable[bool]] | None = None,
                 wakeups: WakeUps | None = None) -> None:
        self.pipeline = pipeline
        self.backoff = backoff
        self.case_filing = case_filing
        self.notices = notices
        self.settings = settings
        self._settings_sync = settings_sync
        self._wakeups = wakeups
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        #: True while the wake-up channel is heard: the loops sleep until told, instead of polling.
        self.hearing = False
        #: When to look at each due set (platform, shard number): event-loop time, from the last reads of
        #: them and the wake-ups heard since.
        self._due: dict[tuple[str, int], float] = {}
        #: When a due word about each due set was last heard (event-loop time): a read that began before it
        #: may not show what it said.
        self._told_at: dict[tuple[str, int], float] = {}
        #: The next recovery pass reads every due set (the first one; after the channel was not heard).
        self._look_everywhere = True
        s = settings
        self._recovery = _Timer(s.recovery_interval)
        self._pending = _Timer(s.maintenance_interval)
        self._notices = _Timer(0.0)
        self._settings = _Timer(0.0)
        self._timers = (self._recovery, self._pending, self._notices, self._settings)

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        s = self.settings
        self._tasks = [
            asyncio.create_task(self._loop("recovery", lambda swept: self.recover_once(everywhere=swept),
                                           self._recovery, s.recovery_interval), name="threadguard recovery"),
            asyncio.create_task(self._loop("pending cases", lambda _: self.file_pending_once(), self._pending,
                                           s.maintenance_interval), name="threadguard pending cases"),
            asyncio.create_task(self._loop("notices", lambda _: self.relay_notices_once(), self._notices,
                                           s.notice_interval), name="threadguard notices"),
        ]
        if self._settings_sync is not None:
            self._tasks.append(asyncio.create_task(
                self._loop("community settings", lambda _: self.sync_settings_once(), self._settings,
                           s.settings_interval), name="threadguard community settings"))
        if self._wakeups is not None:
            self._tasks.append(asyncio.create_task(self._wakeups.listen(self._heard, self._connected),
                                                   name="threadguard wake-ups"))

    async def stop(self, grace: float | None = None) -> None:
        """Stop the loops, then let running turns finish (within the grace) and hand their leases back."""
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self.pipeline.stop(self.settings.shutdown_grace if grace is None else grace)

    async def _loop(self, name: str, step: Callable[[bool], Awaitable[int]], timer: _Timer, interval: float) -> None:
        """Pass after pass of ``step``, each told whether the sweep (or the polling interval) called it."""
        # A flag as well as cancel(): a cancellation inside a Redis call can come back as a connection error.
        loop = asyncio.get_running_loop()
        unreachable = False
        last = float("-inf")

        def horizon() -> float:
            return self.settings.sweep_interval if self.hearing else interval

        while not self._stopping:
            try:
                swept = await timer.wait(last, horizon)
            except asyncio.CancelledError:
                return
            last = loop.time()
            try:
                await step(swept)
                if unreachable:
                    log.info("the %s loop reaches the store again", name)
                    unreachable = False
            except ThreadguardError as exc:
                if not unreachable:
                    log.warning("the %s loop could not reach the store (%s); trying again", name,
                                type(exc).__name__)
                unreachable = True
                timer.at(last + interval)
            except Exception:
                log.exception("the %s loop failed; trying again", name)
                timer.at(last + interval)

    # --- wake-ups --------------------------------------------------------------------------------

    def _connected(self, hearing: bool) -> None:
        """The wake-up channel is heard (again): every loop looks once, for what was said meanwhile; or it
        is not: the loops poll at their intervals until it is."""
        self.hearing = hearing
        self._look_everywhere = True
        for timer in self._timers:
            if hearing:
                timer.soon()
            else:
                timer.nudge()

    def _heard(self, word: WakeUp) -> None:
        platforms = self.pipeline.platforms
        if word.kind == "due" and word.platform in platforms:
            self._told_at[word.platform, word.shard] = asyncio.get_running_loop().time()
            self._recovery.at(self._due_at(word.platform, word.shard, word.at_ms))
        elif word.kind == "notice" and word.platform in platforms:
            self._notices.soon()
        elif word.kind == "settings":
            self._settings.soon()
        elif word.kind == "pending":  # the turn that ended numbers its case; this process looks once it is not
            self._pending.at(asyncio.get_running_loop().time() + PENDING_MIN_AGE + 0.5)
        elif word.kind == "backoff":
            self.backoff.heard(word.at_ms)

    # --- single passes -------------------------------------------------------------------------

    async def sync_settings_once(self) -> int:
        """Apply settings saved since the last pass; returns 1 when they were reloaded."""
        return int(await self._settings_sync()) if self._settings_sync is not None else 0

    async def recover_once(self, *, everywhere: bool = True) -> int:
        """Take over due threads of this process's platforms; returns how many were taken. ``everywhere``:
        from every due set (and the shared back-off read); otherwise only from the sets this process was told
        are due by now (the loop's passes while the wake-up channel is heard)."""
        pipeline, store = self.pipeline, self.pipeline.store
        loop = asyncio.get_running_loop()
        everywhere = everywhere or self._look_everywhere or not self.hearing
        self._look_everywhere = False
        if everywhere:
            await self.backoff.refresh()
        if self.backoff.holding() is not None:  # the threads waiting are due when it ends
            self._look_everywhere = everywhere
            self._recovery.at_epoch_ms(self.backoff.until_ms)
            return 0
        taken = 0
        for platform in pipeline.platforms:
            if not pipeline.has_capacity():  # threads may wait for room here: look again after the interval
                self._look_everywhere = True
                self._recovery.soon()
                break
            now = loop.time()
            shards = None if everywhere else [shard for (p, shard), at in self._due.items()
                                              if p == platform and at <= now]
            if shards == []:
                continue
            due = await store.due_threads(platform, int(time.time() * 1000), self.settings.recovery_batch, shards)
            for shard in range(keys.DUE_SHARDS) if shards is None else shards:
                if self._told_at.get((platform, shard), float("-inf")) < now:  # no word came during the read
                    self._due.pop((platform, shard), None)
            for shard, later_ms in due.later.items():
                self._due_at(platform, shard, later_ms)
            taken += await self._take_due(due)
        if self._due:
            self._recovery.at(min(self._due.values()))
        if pipeline.over_capacity:
            log.warning("over capacity: %d message(s) accepted while %d thread(s) ran here; they wait in "
                        "Redis for any worker", pipeline.over_capacity, pipeline.active)
            pipeline.over_capacity = 0
        return taken

    async def _take_due(self, due: DueThreads) -> int:
        pipeline, store = self.pipeline, self.pipeline.store
        taken = 0
        for key, score in due:
            if pipeline.is_draining(key) or not pipeline.has_capacity():
                continue
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
        return taken

    def _due_at(self, platform: str, shard: int, at_ms: int) -> float:
        """Look at a due set at ``at_ms`` (epoch ms), or sooner if already planned; returns when (loop time)."""
        at = _loop_time(at_ms) + DUE_MARGIN
        planned = self._due.get((platform, shard))
        if planned is None or at < planned:
            self._due[platform, shard] = at
        return min(at, planned) if planned is not None else at

    async def file_pending_once(self) -> int:
        """Number cases left pending; post each to its platform's moderators when this process can."""
        filed = await self.case_filing.reconcile(min_age=PENDING_MIN_AGE, scan=False)
        if self.case_filing.waiting:  # some wait for their numbers (young, or failing): look again
            self._pending.soon()
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
            notices = await self.notices.pop_notices(platform, NOTICES_PER_PASS)
            if len(notices) == NOTICES_PER_PASS:  # more may wait
                self._notices.soon()
            for notice in notices:
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
