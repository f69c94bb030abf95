"""What members do, each written once for every surface: send a message, edit one to branch from an
ended conversation, end a conversation by command; and where their conversations are in places without
threads (a Discord direct message numbers the conversations held in it).

These use cases sit beside the turn pipeline and the engine and use both: a message is checked, its files
taken and the member's limits looked up here, then the pipeline accepts it (ingest, lease) and the engine
answers it in a turn. The adapters and the console call these; neither the pipeline nor the engine calls
back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time

from bot.case_filing import CaseFiling
from bot.engine import ConversationEngine, failed_outcome
from bot.errors import StoreUnavailable, ThreadBusy, ThreadguardError
from bot.history import ladder_from_prefix
from bot.limits import Limiter
from bot.metrics import Metrics, outcome_kind
from bot.pipeline import Ticket, TurnPipeline
from bot.shared import BystanderBranches, end_problem
from bot.store import ClaimStatus, Store, TurnStart
from bot.store.inbox_entry import ReplyTarget, UnknownThread
from bot.types import (
    Author,
    BranchOpener,
    EditedMessage,
    Entry,
    EntryKind,
    IncomingMessage,
    Outcome,
    Reply,
    ReplyKind,
    TextSink,
    ThreadRef,
    ThreadState,
    ThreadStatus,
)
from bot.validation import check_message, looks_empty
from config.communities import Communities, CommunityConfig
from config.settings import AttachmentSettings, EngineSettings

from . import texts

log = logging.getLogger(__name__)


class MemberActions:
    """A member's message, edit and end command, and the conversations of places without threads."""

    def __init__(self, store: Store, engine: ConversationEngine, pipeline: TurnPipeline, case_filing: CaseFiling,
                 communities: Communities, limits: EngineSettings, *, limiter: Limiter | None = None,
                 metrics: Metrics | None = None, attachments: AttachmentSettings | None = None) -> None:
        self.store = store
        self.engine = engine
        self.pipeline = pipeline
        self.case_filing = case_filing
        self.communities = communities
        self.limits = limits
        #: Members' and the community's limits: the checks each message carries and the words they need.
        self.limiter = limiter or Limiter()
        self.metrics = metrics or Metrics()
        #: Limits on members' files (``bot.attachments``).
        self.file_limits = attachments or AttachmentSettings()

    # --- a message -----------------------------------------------------------------------------

    async def accept(self, msg: IncomingMessage, sink: TextSink | None = None, *,
                     target: ReplyTarget | None = None, unknown: UnknownThread = UnknownThread.ACCEPT,
                     wait: bool = True) -> Ticket:
        """Accept one member message into its thread's inbox (one Redis round trip).

        The ticket carries an outcome at once when there is nothing to wait for (a duplicate, a frozen
        thread's reminder, a refusal); otherwise the message will be answered, here (``result()``, or
        the platform's delivery sink when ``wait`` is false) or by the process that owns the thread.
        ``unknown``: what to do when the bot takes no part in the thread yet (``UnknownThread``: a Slack
        reply is ignored, or parked a short while for the thread's opening mention it may have overtaken).
        """
        started = time.perf_counter()
        ticket = await self._accept(msg, sink, target=target, unknown=unknown, wait=wait)
        if ticket.outcome is not None and (ticket.outcome.frozen or ticket.outcome.ignored) and msg.attachments:
            await self._forget_files(msg.thread)
        if ticket.pending_cases:
            await self.case_filing.file_pending_soon(msg.thread)
        if ticket.outcome is not None:  # answered at once: a duplicate, a frozen thread, a refusal
            self.metrics.turn(msg.thread.platform, outcome_kind(ticket.outcome), time.perf_counter() - started)
        return ticket

    async def handle_message(self, msg: IncomingMessage, sink: TextSink | None = None) -> Outcome:
        """Answer one member message (or explain why not), awaiting the answer (the console, tools). When
        another process owns the thread, the outcome says ``queued``: that process answers through the
        platform's delivery sink."""
        ticket = await self.accept(msg, sink)
        return await ticket.result()

    async def _accept(self, msg: IncomingMessage, sink: TextSink | None, *, target: ReplyTarget | None,
                      unknown: UnknownThread, wait: bool) -> Ticket:
        thread = msg.thread
        checked = check_message(msg.text, self.limits.max_message_chars)
        files_only = bool(msg.attachments or msg.files) and looks_empty(msg.text)
        if checked.problem and not files_only:
            return Ticket(thread, Outcome(thread, replies=[Reply(ReplyKind.INFO, checked.problem, ephemeral=True)]))
        config = self.communities.get(thread.community)
        try:
            msg = await self._take_files(msg)
        except StoreUnavailable as exc:
            return Ticket(thread, failed_outcome(thread, exc))
        clean = IncomingMessage(thread, msg.author, checked.text, msg.message_id, msg.event_id, msg.jump_url,
                                files=msg.files)
        deadline = time.monotonic() + self.limits.accept_retry_seconds
        delay = 0.05
        checks = self.limiter.check(msg.author, config, thread.community)
        while True:
            try:
                ticket = await self.pipeline.accept(clean, reminder_cooldown=config.frozen_reminder_cooldown,
                                                    sink=sink, target=target, unknown=unknown, wait=wait,
                                                    reminder=texts.frozen_reminder(config, thread), limits=checks)
                return self._limited(ticket, config)
            except StoreUnavailable as exc:  # a Redis restart takes a moment; the platform waits ~3 s
                if time.monotonic() + delay >= deadline:
                    return Ticket(thread, failed_outcome(thread, exc))
            except ThreadguardError as exc:
                return Ticket(thread, failed_outcome(thread, exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _limited(self, ticket: Ticket, config: CommunityConfig) -> Ticket:
        """A message over a limit, refused or kept: the member is told which limit and when they can go on
        (and whether the message will be answered then), once per window."""
        hit = ticket.limit
        if hit is not None and ticket.outcome is not None:
            log.info("thread %s: message %s by the %s limit", ticket.thread.key, "kept" if hit.kept else "refused",
                     hit.kind)
            if hit.notify:
                ticket.outcome.replies.append(Reply(ReplyKind.INFO, self.limiter.notice(hit, config), ephemeral=True))
        return ticket

    async def _forget_files(self, thread: ThreadRef) -> None:
        """A thread that takes no message keeps no files sent to it: an ended one (its files went with its
        end), one the bot takes no part in."""
        try:
            await self.store.files.delete_thread(thread)
        except StoreUnavailable:
            log.warning("thread %s: files sent to the ended thread expire with it", thread.key)

    async def _take_files(self, msg: IncomingMessage) -> IncomingMessage:
        """The message's files prepared (in a worker thread: decoding and scaling take CPU) and their bytes
        kept in the thread's file store; the message goes on with references only."""
        if not msg.attachments:
            return msg
        from bot import attachments  # the imaging and PDF libraries load with the first file, not at start-up

        prepared = await asyncio.to_thread(attachments.prepare, msg.attachments, self.file_limits)
        if prepared.kept:
            await self.store.files.put(msg.thread, [(p.ref.id, p.payload) for p in prepared.kept])
        log.info("thread %s: %d file(s) taken, %d left out", msg.thread.key, len(prepared.kept),
                 len(prepared.refs) - len(prepared.kept))
        return dataclasses.replace(msg, attachments=(), files=tuple(prepared.refs))

    # --- an edit -------------------------------------------------------------------------------

    async def handle_edit(self, edit: EditedMessage, open_branch: BranchOpener,
                          sink: TextSink | None = None) -> Outcome:
        """An edit in an ended thread opens a branch seeded with the history before that message."""
        old = edit.thread
        checked = check_message(edit.new_text, self.limits.max_message_chars)
        try:
            state, entries = await self.store.turns.load(old)
            if state.status is not ThreadStatus.ENDED:
                return Outcome(old, status=state.status)
            index = _find_user_message(entries, edit.message_id, edit.author.id)
            if index is None:
                return Outcome(old, status=state.status, replies=[Reply(
                    ReplyKind.INFO, "I couldn't find that message of yours in this conversation, so there "
                    "is nothing to branch from.", ephemeral=True)])
            if checked.problem and not (edit.attachments and looks_empty(edit.new_text)):
                return Outcome(old, status=state.status,
                               replies=[Reply(ReplyKind.INFO, checked.problem, ephemeral=True)])
            if not await self.store.dedupe.first_sight(old, edit.dedupe_id):
                return Outcome(old, status=state.status, duplicate=True)
            new_thread = await open_branch(checked.text)
            prefix = entries[:index]
            ladder = ladder_from_prefix(prefix, entries[index].turn)
            link = Entry(EntryKind.BRANCH, f"Branched from {old.key} by editing message {edit.message_id}.",
                         turn=ladder.turn, author_id=edit.author.id, author_name=edit.author.name)
            await self.store.turns.seed_branch(new_thread, [*prefix, link],
                                               ThreadState(new_thread, ladder=ladder, branch_of=old.key))
            await self.case_filing.link_branch(old, state.case_id, new_thread)
        except ThreadguardError as exc:
            return failed_outcome(old, exc)
        log.info("thread %s branched into %s", old.key, new_thread.key)
        first = IncomingMessage(new_thread, edit.author, checked.text, message_id=edit.message_id,
                                event_id=f"branch:{edit.dedupe_id}", attachments=edit.attachments)
        outcome = await self.handle_message(first, sink)
        outcome.branch = new_thread
        return outcome

    # --- the end command -----------------------------------------------------------------------

    async def end_by_user(self, thread: ThreadRef, author: Author, jump_url: str | None = None, *,
                          moderator: bool = False) -> Outcome:
        """The member's own end command: freeze the thread and file a case. In a shared thread only its starter
        (or a ``moderator``) ends it; anyone else is told privately they can leave or start their own."""
        try:
            start = await self._lease_for_end(thread)
            if start is None:
                await self.case_filing.file_pending_soon(thread)  # a case a failure left unnumbered, if any
                return Outcome(thread, status=ThreadStatus.ENDED, frozen=True, replies=[
                    Reply(ReplyKind.INFO, "This conversation has already ended.", ephemeral=True)])
            problem = end_problem(start.log, author, moderator=moderator)
            if problem:
                await self.store.inbox.release(thread, start.token)
                # Messages that arrived while the end command held the thread wait in its inbox: answer
                # them now rather than when the recovery loop next looks.
                await self.pipeline.take_over(thread)
                return Outcome(thread, replies=[Reply(ReplyKind.INFO, problem, ephemeral=True)])
            outcome, nxt = await self.engine.end_turn(thread, start, author, jump_url, moderator=moderator)
            self.pipeline.continue_with(thread, nxt)
            if outcome.case is not None:
                await self.case_filing.record_usage(thread, outcome.case)
            return outcome
        except ThreadguardError as exc:
            return failed_outcome(thread, exc)

    async def end_refusal(self, thread: ThreadRef, author: Author, *, moderator: bool = False) -> str | None:
        """Why ``author``'s end command would be refused in ``thread`` (``None``: it would go ahead), read
        before asking them to confirm; ``end_by_user`` decides again when it ends."""
        state, entries = await self.store.turns.load(thread)
        return None if state.status is ThreadStatus.ENDED else end_problem(entries, author, moderator=moderator)

    # --- a bystander's own conversation ----------------------------------------------------------

    async def continue_as_own(self, old: ThreadRef, member: Author, open_branch: BranchOpener) -> Outcome:
        """A bystander of the ended shared thread ``old`` continues their part of it in a new conversation
        (``bot.shared.BystanderBranches``)."""
        try:
            return await BystanderBranches(self.store, self.case_filing).open(old, member, open_branch)
        except ThreadguardError as exc:
            return failed_outcome(old, exc)

    async def _lease_for_end(self, thread: ThreadRef) -> TurnStart | None:
        """The thread's lease for the end command, waiting for a running turn; ``None`` when ended."""
        deadline = time.monotonic() + self.limits.lock_wait_seconds
        delay = 0.005
        while True:
            taken = await self.store.inbox.lease_for_end(thread)
            if taken.status is ClaimStatus.FROZEN:
                return None
            if taken.start is not None:
                return taken.start
            if time.monotonic() >= deadline:
                raise ThreadBusy(f"thread {thread.key} stayed busy")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, 0.25)

    # --- where conversations are -----------------------------------------------------------------

    async def thread_state(self, thread: ThreadRef) -> ThreadState:
        state, _ = await self.store.turns.load(thread)
        return state

    async def conversation_in(self, channel: ThreadRef) -> ThreadRef:
        """The conversation now running in a place without threads (a Discord DM channel).

        ``channel`` names the place itself; the first conversation there uses that very key, later ones
        (after ``new_conversation_in``) get keys of their own, so an ended one stays frozen for review.
        """
        number = await self.store.conversations.current_conversation(channel)
        return _numbered(channel, number)

    async def conversation_holding(self, channel: ThreadRef, message_id: str, limit: int = 50) -> ThreadRef | None:
        """The numbered conversation of a place without threads that holds the member message
        ``message_id`` (newest first, at most ``limit`` back), so an edit of an older, ended one branches
        from it rather than being looked for in the conversation now running."""
        current = await self.store.conversations.current_conversation(channel)
        for number in range(current, max(-1, current - limit), -1):
            ref = _numbered(channel, number)
            _, entries = await self.store.turns.load(ref)
            if any(e.kind is EntryKind.USER and e.message_id == message_id for e in entries):
                return ref
        return None

    async def new_conversation_in(self, channel: ThreadRef) -> ThreadRef:
        """Start a fresh conversation in a place without threads; later messages go to it."""
        return _numbered(channel, await self.store.conversations.next_conversation(channel))


def _numbered(channel: ThreadRef, number: int) -> ThreadRef:
    if number == 0:
        return channel
    return ThreadRef(channel.platform, channel.community, channel.channel, f"{channel.thread}~{number}")


def _find_user_message(entries: list[Entry], message_id: str, author_id: str) -> int | None:
    for i, e in enumerate(entries):
        if e.kind is EntryKind.USER and e.message_id == message_id and e.author_id == author_id:
            return i
    return None
