"""The turn pipeline: every accepted message answered once, in order, even if its process dies.

A member's message is accepted by one store step (dedupe, frozen check, append to the thread's inbox in
Redis) before the platform is acknowledged. One process at a time owns a thread: it holds a short lease
with a fencing token, renews it while it works, answers the inbox from its head, and removes an entry
only in the commit that writes its turn. When an owner dies its lease runs out and the recovery loop of
any worker (``bot.worker``) takes the thread over.

What the member sees follows the ladder's order. A turn whose outcome still has posts to make (an answer
not streamed, a warning, crisis resources, a freeze notice) is committed with ``hold``: the thread stays
this process's until those posts are out, then ``pass_on`` goes on with the next message or hands the
lease back, so no later answer in the thread can be shown before them, whichever process answers it.

Only the lease holder writes to the platform for a turn. Every write the turn makes before its commit
(the streamed answer, a "working on it" placeholder) asks ``may_write()`` first: it is true while the lease
is known to be held (renewed less than most of a lease ago, measured from when the renewal was sent), and
for good once the turn committed. A process that stalled past its lease (paused, swapped out) therefore
writes nothing more for that turn when it resumes, before it even hears that a newer owner exists; its
fenced commit is then refused. The one window left is a pause between that check and the bytes leaving the
socket, which no platform API can fence.

Replies reach the member two ways. A caller that awaits an ``Outcome`` (the console, tests) gets it from
its ``Ticket`` when this process answers the message. Everything else (every message of Discord and Slack,
whichever of their processes answers it) goes to the platform's ``DeliverySink``, with the target the
inbox entry carries, so any process of that platform can deliver it.

The pipeline and the engine are peers, built side by side by the composition root: the pipeline calls
the engine (its ``TurnRunner``) for the turn of each inbox entry, and the engine never reaches back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from bot import notices
from bot.errors import LeaseLost, StoreUnavailable, TurnDeferred
from bot.limits import LimitCheck, LimitHit
from bot.metrics import Metrics
from bot.store import ClaimStatus, CommitStatus, IngestResult, IngestStatus, TurnInbox, TurnLog, TurnStart
from bot.store.inbox_entry import InboxEntry, ReplyTarget, UnknownThread
from bot.types import (
    Case,
    IncomingMessage,
    Outcome,
    Reply,
    ReplyKind,
    TextSink,
    ThreadNotice,
    ThreadRef,
    ThreadStatus,
)
from config.settings import PipelineSettings

log = logging.getLogger(__name__)

__all__ = ["DeliverySink", "InboxEntry", "LeaseLost", "Ticket", "TurnPipeline", "TurnRunner", "may_write"]

#: Of a lease, the part a write may still rely on after the renewal that started it was sent (the rest
#: covers the request's way to Redis and clocks running at slightly different speeds).
TRUSTED_SHARE = 0.75


@dataclass
class _Lease:
    """A thread's lease as this process knows it."""

    token: str
    drain: asyncio.Task[Any] | None
    #: ``time.monotonic()`` until which the lease is surely still ours.
    trusted_until: float
    lost: bool = False


class TurnFence:
    """Whether the running turn may still write to the platform (see the module's doc)."""

    def __init__(self, lease: _Lease | None) -> None:
        self.lease = lease
        self.committed = False

    def allows(self) -> bool:
        if self.committed or self.lease is None:
            return True
        return not self.lease.lost and time.monotonic() < self.lease.trusted_until


_FENCE: ContextVar[TurnFence | None] = ContextVar("threadguard_turn_fence", default=None)


def may_write() -> bool:
    """Whether a platform write made now, for the turn this task (or the task that started it) runs, is
    the lease holder's. Outside a turn (commands, the mod-log) always true."""
    fence = _FENCE.get()
    return fence is None or fence.allows()


class DeliverySink(Protocol):
    """What an adapter registers for its platform, so any of its processes can answer any thread."""

    def stream(self, entry: InboxEntry) -> TextSink | None:
        """A sink for the answer while the model writes it (or ``None``)."""
        ...

    async def deliver(self, entry: InboxEntry, outcome: Outcome, stream: TextSink | None) -> None:
        """Carry out the outcome of the entry's turn (``stream`` is what ``stream()`` returned)."""
        ...

    async def notice(self, notice: ThreadNotice) -> None:
        """Carry out a notice another process queued for this platform (a dashboard reopen)."""
        ...

    async def case(self, case: Case) -> None:
        """Post a case that was numbered late (after a failover) to the moderators."""
        ...


class TurnRunner(Protocol):
    """The engine's side: answer one inbox entry and commit it (fenced by ``start.token``; ``LeaseLost``
    when a newer owner holds the thread). ``hold``: the outcome is carried out inside the turn, so a turn
    with posts left after its commit keeps the thread (``Outcome.held``) until they are out."""

    async def run_turn(self, start: TurnStart, entry: InboxEntry, sink: TextSink | None,
                       go_on: bool, *, hold: bool = False) -> tuple[Outcome, TurnStart | None]: ...

    async def skip_turn(self, start: TurnStart, entry_id: str, outcome: Outcome,
                        go_on: bool) -> tuple[Outcome, TurnStart | None]: ...


@dataclass
class _Waiter:
    future: asyncio.Future[Outcome]
    sink: TextSink | None
    #: The local drain that will reach this entry (set once the message is stored).
    drain: asyncio.Task[None] | None = None


class Ticket:
    """What accepting a message gives back: an outcome known at once (duplicate, frozen reminder,
    refused), or the answer this process will produce (``result()``)."""

    def __init__(self, thread: ThreadRef, outcome: Outcome | None = None,
                 future: asyncio.Future[Outcome] | None = None, accepted: bool = False,
                 pending_cases: int = 0) -> None:
        self.thread = thread
        self.outcome = outcome
        self._future = future
        #: A frozen thread whose end's case a failure left unnumbered (the caller may file it now).
        self.pending_cases = pending_cases
        #: The message is in the thread's inbox and will be answered (here or by another process).
        self.accepted = accepted
        #: Over a member's or the community's limit: refused (not stored), or kept to be answered when it
        #: resets (``LimitHit.kept``).
        self.limit: LimitHit | None = None

    async def result(self) -> Outcome:
        if self.outcome is not None:
            return self.outcome
        if self._future is None:  # answered by another process, through the platform's sink
            return Outcome(self.thread, queued=True)
        return await self._future


class TurnPipeline:
    """Inbox, leases and the per-thread drain loops of one process. ``turns``: the fenced hand-on after a
    held turn's posts (``pass_on``)."""

    def __init__(self, store: TurnInbox, turns: TurnLog, runner: TurnRunner, limits: PipelineSettings,
                 *, renew_every: float | None = None, metrics: Metrics | None = None) -> None:
        self.store = store
        self.turns = turns
        self.runner = runner
        self.limits = limits
        self.metrics = metrics or Metrics()
        self._renew_every = renew_every
        self._sinks: dict[str, DeliverySink] = {}
        self._waiters: dict[tuple[str, str], _Waiter] = {}
        self._drains: dict[str, asyncio.Task[None]] = {}
        #: thread key -> the lease this process holds and the drain holding it: renewed by one task for all.
        self._leases: dict[str, _Lease] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._stopping = False
        #: Accepts in flight that may bring a thread to work on (counted against the capacity).
        self._taking = 0
        self.over_capacity = 0

    # --- sinks ---------------------------------------------------------------------------------

    def register_sink(self, platform: str, sink: DeliverySink) -> None:
        self._sinks[platform] = sink

    def sink(self, platform: str) -> DeliverySink | None:
        return self._sinks.get(platform)

    @property
    def platforms(self) -> list[str]:
        return sorted(self._sinks)

    @property
    def active(self) -> int:
        return len(self._drains)

    def has_capacity(self) -> bool:
        return not self._stopping and len(self._drains) + self._taking < self.limits.max_active_threads

    # --- accepting -----------------------------------------------------------------------------

    async def accept(self, msg: IncomingMessage, *, reminder_cooldown: int, sink: TextSink | None = None,
                     target: ReplyTarget | None = None, unknown: UnknownThread = UnknownThread.ACCEPT,
                     wait: bool = True, reminder: str | None = None, limits: LimitCheck | None = None
                     ) -> Ticket:
        """Put ``msg`` (already checked) in its thread's inbox; answer it here if the thread is free.

        ``wait``: the caller will await ``Ticket.result()`` for the answer (otherwise the platform's sink
        delivers it). Raises ``StoreUnavailable`` when the message could not be stored.
        """
        thread = msg.thread
        entry = InboxEntry(msg.dedupe_id, msg, target or ReplyTarget(msg.author.id))
        take = self.has_capacity()
        if not take and not self._stopping:
            self.over_capacity += 1
        # Registered before the message is stored: a local owner may reach it before we hear back.
        key = (thread.key, entry.id)
        if key in self._waiters:  # a redelivery racing its original in this process
            return Ticket(thread, Outcome(thread, duplicate=True))
        waiter = None
        if wait:
            waiter = self._waiters[key] = _Waiter(asyncio.get_running_loop().create_future(), sink)
        self._taking += take
        asked = time.monotonic()
        try:
            result = await self.store.ingest(entry, reminder_cooldown=reminder_cooldown, unknown=unknown,
                                             take_lease=take,
                                             max_inbox=self.limits.max_inbox,
                                             max_turns=self.limits.max_thread_turns, limits=limits)
        except BaseException:
            self._forget_waiter(key, waiter)
            raise
        finally:
            self._taking -= take
        status = result.status
        if status is IngestStatus.OWNER:
            self.metrics.inbox_depth(1)
        elif status in (IngestStatus.QUEUED, IngestStatus.FULL):
            self.metrics.inbox_depth(result.queued)
        local = status is IngestStatus.OWNER or (status is IngestStatus.QUEUED and thread.key in self._drains)
        if waiter is not None and not local and not waiter.future.done():
            self._forget_waiter(key, waiter)
            waiter = None
        if result.start is not None:  # this process owns the thread (a refused message: for what waits behind it)
            self._start_drain(thread, result.start, asked)
        if waiter is not None:
            waiter.drain = self._drains.get(thread.key)
        if status in (IngestStatus.OWNER, IngestStatus.QUEUED):
            return Ticket(thread, future=waiter.future if waiter else None, accepted=True)
        return self._refused(thread, result, reminder or notices.frozen_reminder())

    def _forget_waiter(self, key: tuple[str, str], waiter: _Waiter | None) -> None:
        if waiter is not None and self._waiters.get(key) is waiter:
            del self._waiters[key]

    def _refused(self, thread: ThreadRef, result: IngestResult, reminder: str) -> Ticket:
        """A message that gets no turn: what it gets instead, at once."""
        status = result.status
        if status is IngestStatus.DUPLICATE:
            return Ticket(thread, Outcome(thread, duplicate=True))
        if status is IngestStatus.UNKNOWN:
            return Ticket(thread, Outcome(thread, ignored=True))
        if status is IngestStatus.PARKED:  # answered once the thread's opening mention arrives
            return Ticket(thread, Outcome(thread, queued=True), accepted=True)
        if status in (IngestStatus.LIMITED, IngestStatus.HELD):  # the member use case words the notice
            # held: kept, and answered through the platform's sink when the limit resets
            ticket = Ticket(thread, Outcome(thread), accepted=status is IngestStatus.HELD)
            ticket.limit = result.limit
            return ticket
        if status is IngestStatus.FROZEN:
            replies = [Reply(ReplyKind.FROZEN_REMINDER, reminder, ephemeral=True)]
            return Ticket(thread, Outcome(thread, status=ThreadStatus.ENDED, frozen=True,
                                          replies=replies if result.remind else []),
                          pending_cases=result.pending_cases)
        if status is IngestStatus.FULL:
            log.warning("thread %s: inbox full (%d waiting); the member is asked to slow down", thread.key,
                        result.queued)
            return Ticket(thread, Outcome(thread, replies=[Reply(ReplyKind.INFO, notices.slow_down(),
                                                                 ephemeral=True)]))
        log.info("thread %s: length limit reached", thread.key)
        return Ticket(thread, Outcome(thread, replies=[Reply(ReplyKind.INFO, notices.thread_too_long())]))

    # --- owning a thread -----------------------------------------------------------------------

    def _start_drain(self, thread: ThreadRef, start: TurnStart, asked: float) -> None:
        """``asked``: ``time.monotonic()`` when the request that granted the lease was sent."""
        task = asyncio.create_task(self._drain(thread, start, asked), name=f"threadguard turns {thread.key}")
        self._drains[thread.key] = task

    async def take_over(self, thread: ThreadRef) -> ClaimStatus:
        """The recovery loop: own a thread whose inbox waits and whose lease is free."""
        asked = time.monotonic()
        claimed = await self.store.claim(thread)
        if claimed.status is ClaimStatus.OWNER and claimed.start is not None:
            log.info("thread %s: taken over (lease %s)", thread.key, claimed.start.token)
            self._start_drain(thread, claimed.start, asked)
        elif claimed.status is ClaimStatus.HELD:
            # a lease about to run out (0 ms left) is due again in a moment, not a whole lease later
            left = claimed.lease_left_ms if claimed.lease_left_ms >= 0 else self.store_lease_ms
            await self.store.reschedule_due(thread, int(time.time() * 1000) + left + 50)
        return claimed.status

    @property
    def store_lease_ms(self) -> int:
        return self.store.lease_ms

    def is_draining(self, thread_key: str) -> bool:
        return thread_key in self._drains

    def continue_with(self, thread: ThreadRef, start: TurnStart | None) -> None:
        """Work through what is left in the inbox after a turn outside the drain (the end command)."""
        if start is not None and thread.key not in self._drains:
            # the end command's commit kept the lease a moment ago; counted from now, well within it
            self._start_drain(thread, start, time.monotonic() - 0.5)

    def _trust_window(self) -> float:
        return self.store_lease_ms / 1000 * TRUSTED_SHARE

    async def _drain(self, thread: ThreadRef, start: TurnStart, asked: float) -> None:
        me = asyncio.current_task()
        lease = self._leases[thread.key] = _Lease(start.token, me, asked + self._trust_window())
        self._ensure_renewer()
        next_start: TurnStart | None = start
        try:
            while next_start is not None:
                if self._stopping:  # shutting down: the rest of the inbox goes to another worker at once
                    await self._hand_back(thread, next_start.token)
                    break
                next_start = await self._one(thread, next_start)
        finally:
            if self._leases.get(thread.key) is lease:
                del self._leases[thread.key]
            # A newer drain of this thread may already run here (its lease came free with our last commit).
            if self._drains.get(thread.key) is me:
                del self._drains[thread.key]
            self._resolve_left(thread, me)

    async def _one(self, thread: ThreadRef, start: TurnStart) -> TurnStart | None:
        """Answer the inbox head; returns the start of the next turn (lease kept) or ``None``."""
        assert start.head is not None
        go_on = not self._stopping
        try:
            entry = InboxEntry.parse(thread, start.head)
        except ValueError:
            entry_id = start.head.partition("\t")[0]
            log.warning("thread %s: dropped a malformed inbox entry", thread.key)
            _, nxt = await self.runner.skip_turn(start, entry_id, Outcome(thread), go_on)
            return nxt
        waiter = self._waiters.pop((thread.key, entry.id), None)
        platform_sink = self._sinks.get(thread.platform)
        fence = TurnFence(self._leases.get(thread.key))
        reset = _FENCE.set(fence)
        try:
            return await self._answer(thread, start, entry, waiter, platform_sink, fence, go_on)
        finally:
            _FENCE.reset(reset)

    async def _answer(self, thread: ThreadRef, start: TurnStart, entry: InboxEntry, waiter: _Waiter | None,
                      platform_sink: DeliverySink | None, fence: TurnFence, go_on: bool) -> TurnStart | None:
        stream = waiter.sink if waiter is not None else (platform_sink.stream(entry) if platform_sink else None)
        try:
            # a caller that carries the outcome out itself, after this (the console), gains nothing by a hold
            outcome, nxt = await self.runner.run_turn(start, entry, stream, go_on, hold=waiter is None)
        except asyncio.CancelledError:  # shutdown after the grace: the lease goes back, another worker answers
            log.warning("thread %s: turn for entry %s stopped at shutdown; it will be answered again", thread.key,
                        entry.id)
            await self._abandoned(entry, waiter, stream)
            await self._hand_back(thread, start.token)
            raise
        except TurnDeferred as exc:  # the lease is back, the entry waits at the head of the inbox
            await self._abandoned(entry, waiter, stream)
            if exc.tell and platform_sink is not None:
                busy = Outcome(thread, replies=[Reply(ReplyKind.INFO, notices.model_busy(), ephemeral=True)])
                fence.lease = None  # a notice of its own once the lease went back, not one of the turn's writes
                await self._carry_out(entry, platform_sink.deliver(entry, busy, None))
            return None
        except (LeaseLost, StoreUnavailable) as exc:
            log.warning("thread %s: turn for entry %s not committed (%s); it will be answered again",
                        thread.key, entry.id, type(exc).__name__)
            await self._abandoned(entry, waiter, stream)
            if isinstance(exc, StoreUnavailable):
                await self._hand_back(thread, start.token)
            return None
        fence.committed = True  # the turn is this process's for good: its delivery may write
        if nxt is None and not outcome.held:  # the commit handed the lease back: nothing left to renew
            self._forget_lease(thread.key, fence.lease)
        if waiter is not None:
            if not waiter.future.done():
                waiter.future.set_result(outcome)
        elif platform_sink is not None:
            await self._carry_out(entry, platform_sink.deliver(entry, outcome, stream))
        else:
            log.warning("thread %s: no delivery sink for %s in this process; answer %s not shown",
                        thread.key, thread.platform, entry.id)
        if outcome.held and nxt is None:
            nxt = await self._pass_on(thread, start.token, not self._stopping)
        if nxt is None and self._stopping:
            await self._hand_back(thread, start.token)
        return nxt

    def _forget_lease(self, key: str, lease: _Lease | None) -> None:
        if lease is not None and self._leases.get(key) is lease:
            del self._leases[key]

    async def _carry_out(self, entry: InboxEntry, delivery: Awaitable[None]) -> None:
        try:
            await delivery
        except Exception as exc:  # a platform failure never stops the thread's next turns
            log.warning("thread %s: delivering entry %s failed (%s)", entry.thread.key, entry.id, type(exc).__name__)

    async def _pass_on(self, thread: ThreadRef, token: str, go_on: bool) -> TurnStart | None:
        """The posts of a held turn are out: go on with the next message, or hand the thread back."""
        try:
            result = await self.turns.pass_on(thread, token, go_on=go_on)
        except StoreUnavailable:
            log.warning("thread %s: could not hand the lease on; it runs out by itself", thread.key)
            return None
        if result.status is CommitStatus.LOST_LOCK:
            log.warning("thread %s: lease %s lost while its notices were posted", thread.key, token)
        return result.next

    async def _abandoned(self, entry: InboxEntry, waiter: _Waiter | None, stream: TextSink | None) -> None:
        """The turn was not committed: whatever it streamed is withdrawn (it will be answered again)."""
        discard = getattr(stream, "discard", None)
        if discard is not None:
            with contextlib.suppress(Exception):
                await discard()
        if waiter is not None and not waiter.future.done():
            waiter.future.set_result(Outcome(entry.thread, queued=True))

    def _resolve_left(self, thread: ThreadRef, drain: asyncio.Task[Any] | None) -> None:
        """Callers this drain did not reach: another process answers them through the sink."""
        for key in [k for k, w in self._waiters.items() if k[0] == thread.key and w.drain is drain]:
            waiter = self._waiters.pop(key)
            if not waiter.future.done():
                waiter.future.set_result(Outcome(thread, queued=True))

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_all(), name="threadguard lease renewal")

    async def _renew_all(self) -> None:
        """One task renews the leases of every thread this process works on, every third of a lease."""
        every = self._renew_every or max(0.05, self.store_lease_ms / 3000)
        while self._leases:
            await asyncio.sleep(every)
            held = list(self._leases.items())
            sent = time.monotonic()
            results = await asyncio.gather(*(self.store.renew(ThreadRef.from_key(key), lease.token)
                                             for key, lease in held), return_exceptions=True)
            for (key, lease), kept in zip(held, results, strict=True):
                if kept is True:
                    lease.trusted_until = max(lease.trusted_until, sent + self._trust_window())
                elif kept is False and self._leases.get(key) is lease and not lease.lost:  # not a finished drain
                    # The turn is not cancelled (a cancellation could land after its commit went through):
                    # it writes nothing more, its fenced commit will be refused, and what it streamed withdrawn.
                    lease.lost = True
                    log.warning("thread %s: lease %s lost to a newer owner", key, lease.token)
                # a StoreUnavailable: the commit decides; the fencing token keeps it safe
            del held, results  # not kept through the next sleep: finished drains go at once

    async def _hand_back(self, thread: ThreadRef, token: str) -> None:
        try:
            await self.store.release(thread, token)
        except StoreUnavailable:
            log.warning("thread %s: could not hand the lease back; it runs out by itself", thread.key)

    async def idle(self, within: float | None = None) -> bool:
        """Wait until this process works on no thread (tests; shutdown); ``False`` on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        while self._drains:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(set(self._drains.values()), timeout=left)
        return True

    # --- stopping ------------------------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Take no more threads; let running turns finish within ``grace`` seconds, then hand every
        lease back so another worker goes on at once."""
        self._stopping = True
        tasks = list(self._drains.values())
        if tasks:
            log.info("finishing %d running thread(s) within %.0f s", len(tasks), grace)
            _, pending = await asyncio.wait(tasks, timeout=grace)
            if pending:
                log.warning("cancelling %d turn(s) still running after the %.0f s grace", len(pending), grace)
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=5)
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.wait({renewer}, timeout=5)

