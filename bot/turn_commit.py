"""Committing a turn: one fenced write (retried while Redis is unreachable; ``LeaseLost`` when a newer owner
holds the thread) that stores the turn's entries, counters, token usage and, for an end, the freeze with
its case; then what the outcome carries once it is stored: the freeze notice and the numbered case, the
moderators' risk alert, the community's spend alerts, and the files an end deletes at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bot.case_filing import CaseFiling
from bot.errors import LeaseLost, StoreUnavailable
from bot.limits import Limiter, SpendCount
from bot.metrics import Metrics
from bot.model import Usage
from bot.participants import people_of
from bot.shared import branch_offers
from bot.store import AttachmentStore, CommitResult, CommitStatus, TurnCommit, TurnLog, TurnStart
from bot.turn_model import TurnDraft
from bot.types import Case, Entry, Outcome, Reply, ReplyKind, ThreadRef, ThreadStatus, iso
from config.communities import Communities
from config.settings import EngineSettings

from . import texts

log = logging.getLogger(__name__)

#: Ends whose thread's stored files are deleted at once, not left to expire.
FILES_DELETED_ON_END = frozenset({"child_sexual_exploitation"})


class TurnCommitter:
    """Writes a turn under its lease and turns what the store answered into the outcome."""

    def __init__(self, turns: TurnLog, files: AttachmentStore, communities: Communities, limits: EngineSettings,
                 case_filing: CaseFiling, limiter: Limiter, metrics: Metrics) -> None:
        self.turns = turns
        self.files = files
        self.communities = communities
        self.limits = limits
        self.case_filing = case_filing
        self.limiter = limiter
        self.metrics = metrics

    async def fenced(self, thread: ThreadRef, step: Callable[[], Awaitable[CommitResult]]) -> CommitResult:
        """A fenced write, retried while Redis is unreachable; ``LeaseLost`` when a newer owner exists."""
        deadline = time.monotonic() + self.limits.commit_retry_seconds
        delay = 0.1
        while True:
            try:
                result = await step()
            except StoreUnavailable:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if result.status is CommitStatus.LOST_LOCK:
                raise LeaseLost(f"thread {thread.key}: a newer owner holds it")
            return result

    async def commit(self, thread: ThreadRef, start: TurnStart, turn: TurnDraft, jump_url: str | None,
                     ended_by: str, *, entry_id: str, go_on: bool = True, hold: bool = False,
                     window_start: int | None = None, transcript: list[Entry] | None = None,
                     usage: Usage | None = None, spend: SpendCount | None = None) -> tuple[Outcome, TurnStart | None]:
        """Store the turn (fenced by ``start.token``); returns its outcome and the next inbox entry's start."""
        case = build_case(thread, start, turn, jump_url, ended_by, transcript) if turn.end else None
        ladder = start.state.ladder
        commit = TurnCommit(turn.entries, redirects=turn.redirects, warned_turn=turn.warned_turn,
                            at_risk=turn.ladder.at_risk and not ladder.at_risk,
                            crisis_posted=turn.ladder.crisis_posted and not ladder.crisis_posted,
                            jump_url=jump_url, end_case=case, entry_id=entry_id, window_start=window_start,
                            usage=usage, spend=spend)
        result = await self.fenced(thread, lambda: self.turns.commit_turn(thread, start.token, commit,
                                                                          go_on=go_on, hold=hold))
        turn.totals = result.totals
        held = hold and result.next is None
        if result.status is CommitStatus.ALREADY_ENDED:
            return Outcome(thread, status=ThreadStatus.ENDED, frozen=True, held=held), result.next
        self.metrics.ladder(turn.entries)
        outcome = Outcome(thread, replies=turn.replies, held=held)
        outcome.spend_alerts = self._spend_alerts(thread, result.spend_alerts)
        if commit.at_risk:
            outcome.alert = await self.case_filing.risk_flagged(thread, [*start.log, *turn.entries], jump_url)
        if result.status is CommitStatus.ENDED and case is not None and turn.end is not None:
            outcome.status = ThreadStatus.ENDED
            if turn.end.category in FILES_DELETED_ON_END:
                await self._delete_files(thread)
            config = self.communities.get(thread.community)
            outcome.replies.append(Reply(ReplyKind.FREEZE_NOTICE,
                                         texts.freeze_notice(config, thread, turn.end.reason, turn.end.category)))
            outcome.replies.extend(branch_offers(case, ended_by))  # a shared thread's bystanders may go on
            # ``None`` when Redis failed: the freeze and the case body are already stored together, and
            # every running process numbers it within seconds of Redis answering again.
            outcome.case = await self.case_filing.file_end(thread, result.end_seq, case)
            if outcome.case is not None:
                log.info("thread %s ended (%s), case %s", thread.key, turn.end.reason, outcome.case.case_id)
        return outcome, result.next

    def _spend_alerts(self, thread: ThreadRef, levels: tuple[int, ...]) -> list[str]:
        if not levels:
            return []
        config = self.communities.get(thread.community)
        log.warning("community %s passed %s%% of its daily spend ceiling", thread.community, levels[-1])
        return [self.limiter.alert(thread.community, level, config) for level in levels]

    async def _delete_files(self, thread: ThreadRef) -> None:
        """The thread's stored files, deleted at once (retried while Redis is unreachable, like the commit)."""
        deadline = time.monotonic() + self.limits.commit_retry_seconds
        while True:
            try:
                await self.files.delete_thread(thread)
                log.info("thread %s: stored files deleted with its end", thread.key)
                return
            except StoreUnavailable:
                if time.monotonic() >= deadline:
                    log.error("thread %s: its stored files could not be deleted; they expire with it", thread.key)
                    return
                await asyncio.sleep(0.2)


def build_case(thread: ThreadRef, start: TurnStart, turn: TurnDraft, jump_url: str | None,
               ended_by: str, log_so_far: list[Entry] | None) -> Case:
    """The case of the end ``turn`` makes: its transcript (the log so far and the turn's entries), ladder
    and participants with their roles (``bot.participants``); numbered when it is filed."""
    assert turn.end is not None
    transcript = [*(start.log if log_so_far is None else log_so_far), *turn.entries]
    return Case(
        case_id=0, community=thread.community, platform=thread.platform, thread=thread.key,
        channel=thread.channel, action="end", reason=turn.end.reason, category=turn.end.category,
        summary=turn.end.summary, redirect_count=turn.ladder.redirects, warned=turn.ladder.warned,
        at_risk=turn.ladder.at_risk, ended_at=iso(time.time()), ended_by=ended_by,
        participants=people_of(transcript).participants(), transcript=transcript, jump_url=jump_url,
        branch_of=start.state.branch_of,
    )


def posts_after_commit(turn: TurnDraft) -> bool:
    """Whether the turn's outcome makes posts once committed (an answer not streamed, a warning, crisis
    resources, a freeze notice): its commit then keeps the thread until they are out."""
    return turn.end is not None or any(not r.ephemeral for r in turn.replies)
