"""The moderators' use cases, each written once: take a case, record a review, note a case, reopen an
ended thread, decide an appeal.

Every surface (the dashboard, Discord's and Slack's ``/threadguard`` commands, the CLI and the console)
calls these and only renders what they return, so a reopen means the same from any of them: the thread
is unfrozen, the reopen is filed as its own case, the review is concluded as ``reopened``, the ending no
longer counts on its members' record and every appeal still waiting on it is closed as reopened.

Each decision reads the case's current state first: taking a case you already hold changes nothing, and
an ending whose thread was reopened can no longer be upheld (by a review or an appeal decision).
"""

from __future__ import annotations

import enum
import logging
import time
from typing import Protocol

from bot.caselog import CaseLog
from bot.review import (
    Appeal,
    ReviewDesk,
    ReviewState,
    ReviewStorage,
    decision_text,
)
from bot.types import Author, Case, Entry, EntryKind, Outcome, Reply, ReplyKind, ThreadRef, ThreadStatus, iso
from config.communities import Communities

from . import texts

log = logging.getLogger(__name__)

#: Outcomes a moderator records by hand; ``reopened`` is recorded by reopening the thread.
CONCLUSIONS = ("upheld", "mistaken")
DECISIONS = ("uphold", "reopen")
REOPENED = "reopened"


class ThreadUnfreezer(Protocol):
    """The conversation store's reopen step: unfreeze an ended thread and log ``entry`` in it."""

    async def reopen(self, thread: ThreadRef, entry: Entry) -> bool: ...


class NoticeQueue(Protocol):
    """Hands an outcome's replies to the bot process of the thread's platform."""

    async def queue_notice(self, outcome: Outcome, action: str, case_id: int | None = None, *,
                           member: str | None = None) -> None: ...


class Take(enum.StrEnum):
    OK = "ok"
    TAKEN = "taken"  # another moderator has it (and it was not taken over)
    REVIEWED = "reviewed"


class Conclusion(enum.StrEnum):
    CONCLUDED = "concluded"
    REOPENED = "reopened"  # the thread was reopened: that is its review, it cannot be upheld now


class Decision(enum.StrEnum):
    DECIDED = "decided"
    NOT_OPEN = "not_open"  # no such appeal, or already decided
    REOPENED = "already_reopened"  # the thread was reopened meanwhile: the appeal is closed as reopened


class Moderation:
    """The moderators' actions on cases, for every surface."""

    def __init__(self, threads: ThreadUnfreezer, cases: CaseLog, reviews: ReviewStorage, desk: ReviewDesk,
                 notices: NoticeQueue, communities: Communities) -> None:
        self._threads = threads
        self._cases = cases
        self._reviews = reviews
        self._desk = desk
        self._notices = notices
        self._communities = communities

    # --- review ----------------------------------------------------------------------------------

    async def take(self, community: str, case_id: int, moderator: Author, *, take_over: bool = False) -> Take:
        """Put an ended-thread case in review with ``moderator``; a case they already hold stays as it is."""
        await self._desk.end_case(community, case_id)
        current = await self._desk.review(community, case_id)
        if current.state is ReviewState.IN_REVIEW and current.assignee == moderator.name:
            return Take.OK
        result = Take(await self._reviews.assign(community, case_id, moderator.name, take_over=take_over))
        if result is Take.OK:
            await self._cases.add_action(community, case_id, "assign", moderator, f"In review by {moderator.name}.")
        return result

    async def conclude(self, community: str, case_id: int, outcome: str, moderator: Author,
                       note: str | None = None) -> Conclusion:
        """Record the review's outcome (``upheld`` or ``mistaken``); the members' record follows it."""
        if outcome not in CONCLUSIONS:
            raise ValueError(f"unknown review outcome {outcome!r}")
        case = await self._desk.end_case(community, case_id)
        if outcome == "upheld" and (await self._desk.review(community, case_id)).outcome == REOPENED:
            return Conclusion.REOPENED
        await self._reviews.conclude(community, case_id, outcome, moderator.name)
        if outcome == "mistaken":
            await self._desk.strike_out(case)
        else:
            await self._desk.restore(case)
        action = "mistaken" if outcome == "mistaken" else "review"
        text = f"Reviewed: {outcome}." + (f" {note}" if note else "")
        await self._cases.add_action(community, case_id, action, moderator, text)
        return Conclusion.CONCLUDED

    async def note(self, community: str, case_id: int, moderator: Author, text: str) -> Case:
        """A moderator's note, filed as its own case referring to ``case_id``."""
        return await self._cases.add_action(community, case_id, "note", moderator, text)

    # --- reopen ----------------------------------------------------------------------------------

    async def reopen(self, community: str, case_id: int, moderator: Author) -> Outcome:
        """Unfreeze the thread of an end case, file the reopen as its own case and conclude the case's
        review and open appeals as reopened. The outcome's ``action`` is None when nothing changed."""
        case = await self._cases.get(community, case_id)
        thread = ThreadRef.from_key(case.thread)
        if case.action != "end":
            return Outcome(thread, replies=[Reply(ReplyKind.INFO, f"Case {case_id} is a {case.action} "
                                                  "entry, not an ended thread.", ephemeral=True)])
        entry = Entry(EntryKind.REOPEN, f"Reopened by moderator {moderator.name} (case {case_id}).",
                      author_id=moderator.id, author_name=moderator.name)
        if not await self._threads.reopen(thread, entry):
            return Outcome(thread, replies=[Reply(ReplyKind.INFO, f"The thread of case {case_id} is not "
                                                  "ended any more (already reopened or expired).",
                                                  ephemeral=True)])
        action = await self._cases.add_action(community, case_id, "reopen", moderator,
                                              f"Reopened the thread of case {case_id}.")
        log.info("thread %s reopened by moderator %s (case %s)", thread.key, moderator.id, case_id)
        await self._conclude_reopened(case, moderator)
        return Outcome(thread, status=ThreadStatus.ACTIVE, action=action,
                       replies=[Reply(ReplyKind.INFO, texts.reopened(self._communities.get(community), thread))])

    async def _conclude_reopened(self, case: Case, moderator: Author) -> None:
        """The review says reopened, the ending leaves its members' record, waiting appeals are closed."""
        await self._reviews.conclude(case.community, case.case_id, REOPENED, moderator.name)
        await self._desk.strike_out(case)
        for appeal in await self._desk.appeals_of(case.community, case.case_id):
            if appeal.status == "open" and await self._close(appeal, REOPENED, moderator):
                await self._file_decision(appeal, moderator)

    # --- appeals ---------------------------------------------------------------------------------

    async def decide_appeal(self, community: str, case_id: int, member_id: str, decision: str,
                            moderator: Author) -> Decision:
        """Uphold the ending or reopen the thread; the member is told in the thread."""
        if decision not in DECISIONS:
            raise ValueError(f"unknown appeal decision {decision!r}")
        raw = await self._reviews.appeal(community, case_id, member_id)
        appeal = Appeal.from_json(raw) if raw is not None else None
        if appeal is None or appeal.status != "open":
            return Decision.NOT_OPEN
        reopened_already = (await self._desk.review(community, case_id)).outcome == REOPENED
        if decision == "uphold" and reopened_already:
            if not await self._close(appeal, REOPENED, moderator):
                return Decision.NOT_OPEN
            await self._file_decision(appeal, moderator)
            return Decision.REOPENED
        if not await self._close(appeal, "reopened" if decision == "reopen" else "upheld", moderator):
            return Decision.NOT_OPEN
        case = await self._cases.get(community, case_id)
        reply = Reply(ReplyKind.INFO, decision_text(decision, case_id))
        if decision == "reopen":
            await self._reopen_for(case, member_id, reply, moderator)
        else:
            ended = Outcome(ThreadRef.from_key(case.thread), status=ThreadStatus.ENDED, replies=[reply])
            await self._notices.queue_notice(ended, "appeal", case_id, member=member_id)
            await self._reviews.conclude(community, case_id, "upheld", moderator.name)
            await self._desk.restore(case)
        await self._file_decision(appeal, moderator)
        log.info("appeal on case %s of %s: %s by %s", case_id, community, appeal.status, moderator.id)
        return Decision.DECIDED

    async def _reopen_for(self, case: Case, member_id: str, reply: Reply, moderator: Author) -> None:
        """An appeal's reopen: the thread's reopen notice carries the decision for the member."""
        reopened = await self.reopen(case.community, case.case_id, moderator)
        if reopened.action is not None:
            reopened.replies = [*reopened.replies, reply]
            await self._notices.queue_notice(reopened, "reopen", case.case_id, member=member_id)
        else:  # the thread was open already: the member hears the decision, the review says reopened
            await self._notices.queue_notice(Outcome(reopened.thread, replies=[reply]), "appeal", case.case_id,
                                             member=member_id)
            await self._conclude_reopened(case, moderator)

    async def _close(self, appeal: Appeal, status: str, moderator: Author) -> bool:
        """Record an appeal's decision; False when someone decided it first."""
        appeal.status, appeal.decided_by, appeal.decided_at = status, moderator.name, time.time()
        return await self._reviews.decide_appeal(appeal.community, appeal.case_id, appeal.member_id,
                                                 appeal.to_json())

    async def _file_decision(self, appeal: Appeal, moderator: Author) -> None:
        await self._cases.add_action(appeal.community, appeal.case_id, "review", moderator,
                                     f"Appeal by {appeal.member_name} ({appeal.member_id}): {appeal.status} "
                                     f"at {iso(appeal.decided_at)}.")
