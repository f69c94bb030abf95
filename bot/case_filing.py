"""Cases beside the turns: an end's case numbered in its community, the ones a failure left pending
numbered later (by the next event in their thread, or by the loop every process runs), and the review
desk told of each (the members' end records) and of every risk flag (the moderators' alerts).

The engine files the case of the end it commits; the member actions file the pending case an event in an
ended thread shows; the worker numbers what is left. Each goes through here, so a case numbered late
enters the members' records exactly as one numbered at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from bot.errors import StoreUnavailable, ThreadguardError
from bot.store import CaseStore
from bot.types import Case, Entry, EntryKind, ThreadRef
from bot.usage import TokenTotals, UsageRecorder

log = logging.getLogger(__name__)


class MemberRecords(Protocol):
    """The review desk's hooks into turns: members' end records, the community's repeat policy and
    moderators' risk alerts."""

    async def case_filed(self, case: Case) -> None: ...

    async def threshold_for(self, community: str, member_id: str, threshold: int) -> int: ...

    async def risk_flagged(self, thread: ThreadRef, kind: str, transcript: list[Entry],
                           jump_url: str | None) -> Case | None: ...


class CaseFiling:
    """Numbers and files cases, and tells the review desk. ``pending_wait``: how long an event in an
    ended thread waits on numbering the case a failure left pending."""

    def __init__(self, cases: CaseStore, member_records: MemberRecords | None = None, *,
                 usage: UsageRecorder | None = None, pending_wait: float = 1.0) -> None:
        self.cases = cases
        #: Records members' ends and files risk alerts (the review desk).
        self.member_records = member_records
        self.usage = usage
        self.pending_wait = pending_wait
        #: Threads the last ``reconcile`` found with cases waiting for their numbers (numbered since or not).
        self.waiting = 0

    async def file_end(self, thread: ThreadRef, end_seq: int, case: Case) -> Case | None:
        """Number the case of the end just committed (``None``: Redis failed; the case body is stored with the
        freeze, and every running process numbers it within seconds of Redis answering again)."""
        try:
            filed = await self.cases.file_end_case(thread, end_seq, case)
        except StoreUnavailable:
            log.warning("thread %s ended; numbering its case is deferred", thread.key)
            return None
        await self.filed([filed])
        return filed

    async def file_pending(self, thread: ThreadRef) -> list[Case]:
        """Number the cases of ``thread`` a failure left pending, now (``StoreUnavailable`` raised)."""
        filed = await self.cases.file_pending_cases(thread)
        await self.filed(filed)
        return filed

    async def link_branch(self, old: ThreadRef, case_id: int | None, new_thread: ThreadRef) -> None:
        """Link ``new_thread`` (a branch or a bystander's own conversation) to the case of the end of ``old``;
        an end whose case still waits for its number (``case_id`` None) is numbered now."""
        if case_id is None:
            filed = await self.file_pending(old)
            case_id = filed[-1].case_id if filed else None
        if case_id is not None:
            await self.cases.link_branch(old.community, case_id, new_thread.key)

    async def file_pending_soon(self, thread: ThreadRef) -> None:
        """Number the case of an end a failure left pending, when a later event in its thread shows it;
        bounded, so a reminder never waits long on case numbering (the worker loop files it otherwise)."""
        try:
            filed = await asyncio.wait_for(self.cases.file_pending_cases(thread), self.pending_wait)
        except (StoreUnavailable, TimeoutError):
            log.warning("thread %s: its pending case is left to the background filing", thread.key)
            return
        for case in filed:
            log.info("thread %s: pending case %s filed", thread.key, case.case_id)
        await self.filed(filed)

    async def reconcile(self, min_age: float = 0.0, *, scan: bool = True) -> list[Case]:
        """Number every case a crashed process or a failover left pending (older than ``min_age``
        seconds); returns those numbered now. Idempotent: every process runs it in a loop (``bot.worker``)
        from the pending-case index; ``scan`` (start-up) looks through the whole keyspace instead."""
        filed: list[Case] = []
        threads = await self.cases.threads_with_pending_cases(scan=scan)
        self.waiting = len(threads)
        for thread in threads:
            filed.extend(await self.cases.file_pending_cases(thread, min_age))
        if filed:
            log.warning("filed %d case(s) left pending by an earlier failure", len(filed))
        await self.filed(filed)
        return filed

    async def filed(self, cases: list[Case]) -> None:
        """Cases just numbered enter the members' end records (late ones too)."""
        if self.member_records is None:
            return
        for case in cases:
            try:
                await self.member_records.case_filed(case)
            except StoreUnavailable:
                log.warning("case %s of %s: the members' end history was not updated", case.case_id,
                            case.community)

    async def risk_flagged(self, thread: ThreadRef, transcript: list[Entry], jump_url: str | None) -> Case | None:
        """The thread was flagged at risk: the moderators' alert, when the community wants one."""
        kind = next((e.category for e in reversed(transcript) if e.kind is EntryKind.RISK), None) or "self_harm"
        if self.member_records is None:
            return None
        try:
            return await self.member_records.risk_flagged(thread, kind, transcript, jump_url)
        except StoreUnavailable:
            log.warning("thread %s: risk flagged; the moderators' alert could not be filed", thread.key)
            return None

    async def record_usage(self, thread: ThreadRef, case: Case, totals: TokenTotals | None = None) -> None:
        """File the thread's token totals with the case it just ended in."""
        if self.usage is None:
            return
        try:
            await self.usage.record_case(case.community, case.case_id,
                                         totals if totals is not None else await self.usage.thread(thread.key))
        except ThreadguardError as exc:
            log.warning("thread %s: token usage of case %s not recorded (%s)", thread.key, case.case_id,
                        type(exc).__name__)
