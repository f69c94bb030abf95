"""Shared threads: the turn's view of who is speaking, the addressed words of the ladder, who may end a
thread by command, and a bystander's own conversation branched from an ended thread.

The ladder stays the thread's (one count, one warning, one end); this module only decides whom its words
name and whom a request speaks for. The people come from the thread's log (``bot.participants``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.case_filing import CaseFiling
from bot.history import ladder_from_prefix, member_line
from bot.model import Speaker
from bot.participants import ThreadPeople, people_of
from bot.store import Store, TurnStart
from bot.types import (
    Author,
    BranchOpener,
    Case,
    Entry,
    EntryKind,
    Outcome,
    Reply,
    ReplyKind,
    ThreadRef,
    ThreadState,
    ThreadStatus,
)

log = logging.getLogger(__name__)

NOTHING_TO_END = "There is no conversation with me here to end."
NOT_A_PARTICIPANT = "Only someone taking part in this conversation can end it."
NOT_THE_STARTER = (
    "Only the member who started this conversation (or a moderator) can end it, so it goes on for the others. "
    "You can simply leave this thread, or start a conversation of your own with me at any time."
)
BRANCH_OFFER = (
    "This conversation has ended for everyone here, but your part of it doesn't have to: you can continue in a "
    "new conversation of your own, with this thread's history from before the end (without the requests I "
    "redirected)."
)
NOT_ENDED = "This conversation is still going; you can keep writing in it."
NOT_A_BYSTANDER = ("Only members who took part in this conversation, and none of whose requests I had to "
                   "redirect, can continue it in a conversation of their own. You can start a new "
                   "conversation at any time.")
ALREADY_CONTINUED = "You already continued this conversation in a conversation of your own."


# --- a turn in a shared thread -------------------------------------------------------------------------

@dataclass
class TurnPeople:
    """The people of the thread a turn answers in, and the member whose message it answers.

    ``shared``: more than one member wrote in the history window (with this message); their lines then
    reach the model labelled, and the ladder's words name whom they are for."""

    people: ThreadPeople
    speaker: Author

    @property
    def shared(self) -> bool:
        return self.people.shared

    @property
    def starter(self) -> bool:
        """Whether the speaker started the thread (only they may have it ended at their request)."""
        return self.people.is_starter(self.speaker.id)

    def line(self, text: str) -> str:
        """The speaker's newest message as the model reads it."""
        return member_line(text, self.speaker.id, self.speaker.name) if self.shared else text

    def note(self) -> Speaker | None:
        """What the per-turn note says about the speaker (only in a shared thread)."""
        if not self.shared:
            return None
        return Speaker(self.speaker.id, self.starter, self.people.redirected.get(self.speaker.id, 0))

    def warned(self, turn_entries: list[Entry]) -> tuple[str, ...]:
        """Whom the warning posted in this turn names: every member whose requests were redirected."""
        if not self.shared:
            return ()
        after = self.people.with_turn(self.speaker, turn_entries)
        return tuple(m for m, n in after.redirected.items() if n)

    def at_risk(self) -> tuple[str, ...]:
        """Whom crisis resources posted in this turn are for: the member being answered."""
        return (self.speaker.id,) if self.shared else ()


class Starters:
    """The starters of threads whose history window no longer holds their first lines: read once from the
    whole log, then kept (a thread's starter never changes), for at most ``limit`` threads."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._known: OrderedDict[str, str | None] = OrderedDict()

    async def of(self, thread: ThreadRef, read_log: Callable[[ThreadRef], Awaitable[list[Entry]]]) -> str | None:
        key = thread.key
        if key in self._known:
            self._known.move_to_end(key)
            return self._known[key]
        starter = people_of(await read_log(thread)).starter
        self._known[key] = starter
        if len(self._known) > self._limit:
            self._known.popitem(last=False)
        return starter


async def turn_people(store: Store, starters: Starters, start: TurnStart, speaker: Author) -> TurnPeople:
    """The people of a turn from its window; the starter from the whole log when the window moved past it."""
    people = people_of(start.log)
    if start.window_start > 0:
        people.starter = await starters.of(start.state.thread, store.turns.read_log)
    return TurnPeople(people.with_turn(speaker, ()), speaker)


# --- ending a shared thread by command -----------------------------------------------------------------

def end_problem(log_entries: list[Entry], member: Author, *, moderator: bool = False) -> str | None:
    """Why ``member``'s end command may not end this thread (``None``: it may). A moderator may end any
    conversation; otherwise only its starter, so one participant never ends it for everyone else."""
    if not any(e.kind is EntryKind.USER for e in log_entries):
        return NOTHING_TO_END
    if moderator:
        return None
    people = people_of(log_entries)
    if member.id not in people.names:
        return NOT_A_PARTICIPANT
    if not people.is_starter(member.id):
        return NOT_THE_STARTER
    return None


# --- bystanders of an ended thread ---------------------------------------------------------------------

def branch_offers(case: Case, ended_by: str) -> list[Reply]:
    """After a shared thread ended: the line that tells its bystanders (members none of whose requests were
    redirected, but the one who asked for the end) they can continue in a conversation of their own."""
    if len(case.participants) < 2:
        return []
    asked = ended_by.removeprefix("user:") if ended_by.startswith("user:") else None
    if case.reason == "user_requested" and ended_by == "model":  # the model ended it at the starter's request
        asked = next((p.id for p in case.participants if "starter" in p.role.split(",")), None)
    names = tuple(p.id for p in case.participants if "redirected" not in p.role.split(",") and p.id != asked)
    return [Reply(ReplyKind.BRANCH_OFFER, BRANCH_OFFER, to=names)] if names else []


def bystander_history(entries: list[Entry]) -> list[Entry]:
    """What a bystander's own conversation starts with: the ended thread's log before its end, without the
    turns of members whose requests were redirected (nor any turn with a redirection or a refusal in it)."""
    last_end = max((i for i, e in enumerate(entries) if e.kind is EntryKind.END), default=len(entries))
    before = entries[:last_end]
    people = people_of(before)
    authors = {e.turn: e.author_id for e in before if e.kind is EntryKind.USER}
    dropped = {e.turn for e in before if e.kind in (EntryKind.REDIRECTION, EntryKind.REFUSAL, EntryKind.WARNING)}
    dropped |= {turn for turn, author in authors.items() if author and people.redirected.get(author)}
    keep_kinds = (EntryKind.BRANCH, EntryKind.REOPEN)
    return [dataclasses.replace(e) for e in before if e.kind in keep_kinds or e.turn not in dropped]


class BystanderBranches:
    """A bystander of an ended shared thread continues their part of it in a conversation of their own."""

    def __init__(self, store: Store, case_filing: CaseFiling) -> None:
        self._store = store
        self._case_filing = case_filing

    async def open(self, old: ThreadRef, member: Author, open_branch: BranchOpener) -> Outcome:
        """Seed the member's new conversation (opened by ``open_branch``) from ``old``; the outcome names it
        (``branch``), or says privately why not."""
        state, entries = await self._store.turns.load(old)
        problem = self._problem(state, entries, member)
        if problem is not None:
            return Outcome(old, status=state.status, replies=[Reply(ReplyKind.INFO, problem, ephemeral=True)])
        if not await self._store.dedupe.first_sight(old, f"own-branch:{member.id}"):
            return Outcome(old, status=state.status, duplicate=True,
                           replies=[Reply(ReplyKind.INFO, ALREADY_CONTINUED, ephemeral=True)])
        new_thread = await open_branch("")
        history = bystander_history(entries)
        ladder = ladder_from_prefix(history, state.ladder.turn + 1)
        link = Entry(EntryKind.BRANCH, f"Branched from {old.key} for a member who took no part in what ended it.",
                     turn=ladder.turn, author_id=member.id, author_name=member.name)
        await self._store.turns.seed_branch(new_thread, [*history, link],
                                            ThreadState(new_thread, ladder=ladder, branch_of=old.key))
        await self._case_filing.link_branch(old, state.case_id, new_thread)
        log.info("thread %s continued by a bystander in %s", old.key, new_thread.key)
        return Outcome(new_thread, branch=new_thread)

    @staticmethod
    def _problem(state: ThreadState, entries: list[Entry], member: Author) -> str | None:
        if state.status is not ThreadStatus.ENDED:
            return NOT_ENDED
        before = entries[:max((i for i, e in enumerate(entries) if e.kind is EntryKind.END), default=len(entries))]
        people = people_of(before)
        if member.id not in people.names or people.redirected.get(member.id):
            return NOT_A_BYSTANDER
        return None

