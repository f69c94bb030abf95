"""The conversation engine: a member's turn, the ladder enforced, every end a case.

How messages reach a turn (the inbox, leases, recovery) is ``bot.pipeline``; this module is the turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.backoff import ModelBackoff
from bot.caselog import CaseLog
from bot.errors import (
    ModelBackingOff,
    ModelError,
    ModelRateLimited,
    ModelRequestRejected,
    ModelTimedOut,
    StoreUnavailable,
    ThreadBusy,
    ThreadguardError,
)
from bot.files import dropped, file_blocks, left_out_lines, refs_tokens, stored_ids
from bot.history import estimate_tokens, ladder_from_prefix, to_messages, window_cut
from bot.limits import Limiter, SpendCount
from bot.metrics import Metrics, outcome_kind
from bot.model import (
    Block,
    FileBlock,
    ModelClient,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextBlock,
    ToolResultBlock,
    Usage,
    ladder_note,
    system_prompt,
)
from bot.participants import people_of
from bot.pipeline import Deliver, LeaseLost, Ticket, TurnPipeline
from bot.policy import EndDecision, ToolCall, Verdict, apply_tool_call
from bot.shared import BystanderBranches, Starters, TurnPeople, branch_offers, end_problem, turn_people
from bot.store import ClaimStatus, CommitResult, CommitStatus, Store, TurnCommit, TurnStart
from bot.store.inbox_entry import InboxEntry, ReplyTarget, UnknownThread
from bot.types import (
    Author,
    BranchOpener,
    Case,
    EditedMessage,
    Entry,
    EntryKind,
    IncomingMessage,
    LadderState,
    Outcome,
    Reply,
    ReplyKind,
    TextSink,
    ThreadNotice,
    ThreadRef,
    ThreadState,
    ThreadStatus,
    iso,
)
from bot.usage import TokenTotals, UsageRecorder
from bot.validation import check_message, looks_empty
from config.communities import Communities, CommunityConfig
from config.settings import AttachmentSettings, EngineSettings, PipelineSettings

from . import notices, texts

log = logging.getLogger(__name__)


@dataclass
class _Turn:
    """What one turn produced, before it is committed."""

    ladder: LadderState
    entries: list[Entry]
    replies: list[Reply] = field(default_factory=list)
    answer: str = ""
    redirects: int = 0
    warned_turn: int | None = None
    end: EndDecision | None = None
    refused: bool = False
    usage: Usage = field(default_factory=Usage)
    accounted: bool = False
    #: The thread's usage sums after the commit added this turn's.
    totals: TokenTotals | None = None
    #: Who writes in the thread and whose message this turn answers (``None``: the member's end command).
    people: TurnPeople | None = None


class MemberRecords(Protocol):
    """The review desk's hooks into turns: members' end records, the community's repeat policy and
    moderators' risk alerts."""

    async def case_filed(self, case: Case) -> None: ...

    async def threshold_for(self, community: str, member_id: str, threshold: int) -> int: ...

    async def risk_flagged(self, thread: ThreadRef, kind: str, transcript: list[Entry],
                           jump_url: str | None) -> Case | None: ...


class ConversationEngine:
    """Handles member messages, edits and user ends for every platform (moderator actions: ``bot.moderation``)."""

    def __init__(self, store: Store, model: ModelClient, communities: Communities, limits: EngineSettings,
                 pipeline: PipelineSettings, *, usage: UsageRecorder | None = None,
                 metrics: Metrics | None = None, member_records: MemberRecords | None = None,
                 limiter: Limiter | None = None, attachments: AttachmentSettings | None = None) -> None:
        self.store = store
        self.model = model
        self.communities = communities
        self.limits = limits
        self.cases = CaseLog(store.cases)
        self.usage = usage
        self.metrics = metrics or Metrics()
        #: Records members' ends, applies the repeat policy and files risk alerts (the review desk).
        self.member_records = member_records
        #: Members' and the community's limits: the checks each message carries and the words they need.
        self.limiter = limiter or Limiter()
        #: The model API's back-off, shared by every worker.
        self.backoff = ModelBackoff(store.backoff, pipeline.busy_notice_seconds)
        #: Limits on members' files (``bot.attachments``).
        self.file_limits = attachments or AttachmentSettings()
        self.pipeline = TurnPipeline(store.inbox, self, pipeline, metrics=self.metrics)
        #: Starters of long threads (``bot.shared``), and bystanders' own conversations after an end.
        self.starters = Starters()
        self.bystanders = BystanderBranches(store, self._cases_filed)

    # --- public API ----------------------------------------------------------------------------

    async def accept(self, msg: IncomingMessage, sink: TextSink | None = None, *,
                     target: ReplyTarget | None = None, unknown: UnknownThread = UnknownThread.ACCEPT,
                     wait: bool = True, deliver: Deliver | None = None) -> Ticket:
        """Accept one member message into its thread's inbox (one Redis round trip).

        The ticket carries an outcome at once when there is nothing to wait for (a duplicate, a frozen
        thread's reminder, a refusal); otherwise the message will be answered, here (``result()``, or
        the platform's delivery sink when ``wait`` is false) or by the process that owns the thread.
        ``unknown``: what to do when the bot takes no part in the thread yet (``UnknownThread``: a Slack
        reply is ignored, or parked a short while for the thread's opening mention it may have overtaken).
        ``deliver``: carries the answer out (when this process answers) before the thread goes on.
        """
        started = time.perf_counter()
        ticket = await self._accept(msg, sink, target=target, unknown=unknown, wait=wait, deliver=deliver)
        if ticket.outcome is not None and (ticket.outcome.frozen or ticket.outcome.ignored) and msg.attachments:
            await self._forget_files(msg.thread)
        if ticket.pending_cases:
            await self._file_pending(msg.thread)
        if ticket.outcome is not None:  # answered at once: a duplicate, a frozen thread, a refusal
            self.metrics.turn(msg.thread.platform, outcome_kind(ticket.outcome), time.perf_counter() - started)
        return ticket

    async def _accept(self, msg: IncomingMessage, sink: TextSink | None, *, target: ReplyTarget | None,
                      unknown: UnknownThread, wait: bool, deliver: Deliver | None) -> Ticket:
        thread = msg.thread
        checked = check_message(msg.text, self.limits.max_message_chars)
        files_only = bool(msg.attachments or msg.files) and looks_empty(msg.text)
        if checked.problem and not files_only:
            return Ticket(thread, Outcome(thread, replies=[Reply(ReplyKind.INFO, checked.problem, ephemeral=True)]))
        config = self.communities.get(thread.community)
        try:
            msg = await self._take_files(msg)
        except StoreUnavailable as exc:
            return Ticket(thread, self._failed(thread, exc))
        clean = IncomingMessage(thread, msg.author, checked.text, msg.message_id, msg.event_id, msg.jump_url,
                                files=msg.files)
        deadline = time.monotonic() + self.limits.accept_retry_seconds
        delay = 0.05
        checks = self.limiter.check(msg.author, config, thread.community)
        while True:
            try:
                ticket = await self.pipeline.accept(clean, reminder_cooldown=config.frozen_reminder_cooldown,
                                                    sink=sink, target=target, unknown=unknown, wait=wait,
                                                    reminder=texts.frozen_reminder(config, thread), limits=checks,
                                                    deliver=deliver)
                return self._limited(ticket, config)
            except StoreUnavailable as exc:  # a Redis restart takes a moment; the platform waits ~3 s
                if time.monotonic() + delay >= deadline:
                    return Ticket(thread, self._failed(thread, exc))
            except ThreadguardError as exc:
                return Ticket(thread, self._failed(thread, exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _limited(self, ticket: Ticket, config: CommunityConfig) -> Ticket:
        """A message a limit refused: the member is told which and when they can go on, once per window."""
        hit = ticket.limit
        if hit is not None and ticket.outcome is not None:
            log.info("thread %s: message refused by the %s limit", ticket.thread.key, hit.kind)
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

    async def handle_message(self, msg: IncomingMessage, sink: TextSink | None = None, *,
                             deliver: Deliver | None = None) -> Outcome:
        """Answer one member message (or explain why not). When another process owns the thread, the
        outcome says ``queued``: that process answers through the platform's delivery sink. ``deliver``
        carries the answer out while the thread is still this turn's (the caller then posts nothing)."""
        ticket = await self.accept(msg, sink, deliver=deliver)
        return await ticket.result()

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
            case_id = state.case_id
            if case_id is None:  # the end's case is still waiting for its number: this event files it
                filed = await self.store.cases.file_pending_cases(old)
                await self._cases_filed(filed)
                case_id = filed[-1].case_id if filed else None
            if case_id is not None:
                await self.store.cases.link_branch(old.community, case_id, new_thread.key)
        except ThreadguardError as exc:
            return self._failed(old, exc)
        log.info("thread %s branched into %s", old.key, new_thread.key)
        first = IncomingMessage(new_thread, edit.author, checked.text, message_id=edit.message_id,
                                event_id=f"branch:{edit.dedupe_id}", attachments=edit.attachments)
        outcome = await self.handle_message(first, sink)
        outcome.branch = new_thread
        return outcome

    async def end_by_user(self, thread: ThreadRef, author: Author, jump_url: str | None = None, *,
                          moderator: bool = False) -> Outcome:
        """The member's own end command: freeze the thread and file a case. In a shared thread only its starter
        (or a ``moderator``) ends it; anyone else is told privately they can leave or start their own."""
        try:
            start = await self._lease_for_end(thread)
            if start is None:
                await self._file_pending(thread)  # a case a failure left unnumbered, if any
                return Outcome(thread, status=ThreadStatus.ENDED, frozen=True, replies=[
                    Reply(ReplyKind.INFO, "This conversation has already ended.", ephemeral=True)])
            problem = end_problem(start.log, author, moderator=moderator)
            if problem:
                await self.store.inbox.release(thread, start.token)
                # Messages that arrived while the end command held the thread wait in its inbox: answer
                # them now rather than when the recovery loop next looks.
                await self.pipeline.take_over(thread)
                return Outcome(thread, replies=[Reply(ReplyKind.INFO, problem, ephemeral=True)])
            ladder = start.state.ladder
            end = EndDecision("user_requested", "other", "The member ended the conversation with /end.")
            entry = Entry(EntryKind.END, "Ended by the member's end command.", turn=ladder.turn,
                          author_id=author.id, author_name=author.name)
            turn = _Turn(ladder, [entry], end=end)
            by = "user" if not moderator or author.id == people_of(start.log).starter else "moderator"
            outcome, nxt = await self._commit(thread, start, turn, jump_url, ended_by=f"{by}:{author.id}",
                                              entry_id="", transcript=start.log)
            self.pipeline.continue_with(thread, nxt)
            if outcome.case is not None:
                await self._account_case(thread, outcome.case, None)
            return outcome
        except ThreadguardError as exc:
            return self._failed(thread, exc)

    async def end_refusal(self, thread: ThreadRef, author: Author, *, moderator: bool = False) -> str | None:
        """Why ``author``'s end command would be refused in ``thread`` (``None``: it would go ahead), read
        before asking them to confirm; ``end_by_user`` decides again when it ends."""
        state, entries = await self.store.turns.load(thread)
        return None if state.status is ThreadStatus.ENDED else end_problem(entries, author, moderator=moderator)

    async def continue_as_own(self, old: ThreadRef, member: Author, open_branch: BranchOpener) -> Outcome:
        """A bystander of the ended shared thread ``old`` continues their part of it in a new conversation
        (``bot.shared.BystanderBranches``)."""
        try:
            return await self.bystanders.open(old, member, open_branch)
        except ThreadguardError as exc:
            return self._failed(old, exc)

    async def _file_pending(self, thread: ThreadRef) -> None:
        """Number the case of an end a failure left pending, when a later event in its thread shows it;
        bounded, so a reminder never waits long on case numbering (the worker loop files it otherwise)."""
        try:
            filed = await asyncio.wait_for(self.store.cases.file_pending_cases(thread),
                                           self.limits.pending_filing_seconds)
        except (StoreUnavailable, TimeoutError):
            log.warning("thread %s: its pending case is left to the background filing", thread.key)
            return
        for case in filed:
            log.info("thread %s: pending case %s filed", thread.key, case.case_id)
        await self._cases_filed(filed)

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

    async def queue_notice(self, outcome: Outcome, action: str, case_id: int | None = None, *,
                           member: str | None = None) -> None:
        """Hand an outcome's replies to the bot process of the thread's platform (see ``pop_notices``).

        For surfaces without a platform connection, such as the dashboard: a reopen there unfreezes the
        thread at once, and the Discord or Slack process posts the notice (and unlocks the thread).
        """
        notice = ThreadNotice(outcome.thread, action, list(outcome.replies), case_id, member=member)
        await self.store.notices.push_notice(outcome.thread.platform, notice.to_json())

    async def pop_notices(self, platform: str, limit: int = 20) -> list[ThreadNotice]:
        """Notices queued for ``platform``, oldest first; each is handed out once."""
        notices_: list[ThreadNotice] = []
        for raw in await self.store.notices.pop_notices(platform, limit):
            try:
                notices_.append(ThreadNotice.from_json(raw))
            except (ValueError, KeyError, TypeError):
                log.warning("dropped a malformed thread notice for %s", platform)
        return notices_

    async def thread_state(self, thread: ThreadRef) -> ThreadState:
        state, _ = await self.store.turns.load(thread)
        return state

    async def reconcile(self, min_age: float = 0.0, *, scan: bool = True) -> list[Case]:
        """Number every case a crashed process or a failover left pending (older than ``min_age``
        seconds); returns those numbered now. Idempotent: every process runs it in a loop (``bot.worker``)
        from the pending-case index; ``scan`` (start-up) looks through the whole keyspace instead."""
        filed: list[Case] = []
        for thread in await self.store.cases.threads_with_pending_cases(scan=scan):
            filed.extend(await self.store.cases.file_pending_cases(thread, min_age))
        if filed:
            log.warning("filed %d case(s) left pending by an earlier failure", len(filed))
        await self._cases_filed(filed)
        return filed

    # --- the turn (called by the pipeline for the head of a thread's inbox) --------------------

    async def run_turn(self, start: TurnStart, entry: InboxEntry, sink: TextSink | None,
                       go_on: bool, *, hold: bool = False) -> tuple[Outcome, TurnStart | None]:
        started = time.perf_counter()
        outcome, nxt = await self._run_turn(start, entry, sink, go_on, hold)
        self.metrics.turn(entry.thread.platform, outcome_kind(outcome), time.perf_counter() - started)
        return outcome, nxt

    async def _run_turn(self, start: TurnStart, entry: InboxEntry, sink: TextSink | None,
                        go_on: bool, hold: bool) -> tuple[Outcome, TurnStart | None]:
        thread = entry.thread
        config = self.communities.get(thread.community)
        if start.state.status is ThreadStatus.ENDED:  # ended while this message waited in the inbox
            result = await self._retrying(thread, lambda: self.store.turns.drop_head(
                thread, start.token, entry.id, go_on=go_on, reminder_cooldown=config.frozen_reminder_cooldown))
            replies = [Reply(ReplyKind.FROZEN_REMINDER, texts.frozen_reminder(config, thread), ephemeral=True)]
            return Outcome(thread, status=ThreadStatus.ENDED, frozen=True,
                           replies=replies if result.remind else []), result.next
        try:
            holding = self.backoff.holding()
            if holding is not None:  # the model API asked every worker to wait: the message stays queued
                raise await self.backoff.wait_out(thread, start.token, holding)
            return await self._answer(entry.message, start, config, sink, go_on, hold)
        except (LeaseLost, StoreUnavailable, ModelBackingOff):
            raise
        except ModelRateLimited as exc:  # nothing changed: the message waits in the inbox for the back-off
            raise await self.backoff.wait_out(thread, start.token, await self.backoff.rate_limited(exc)) from exc
        except ModelError as exc:  # nothing changed: the member may send the same message again
            return await self.skip_turn(start, entry.id, self._failed(thread, exc), go_on, forget=True)
        except Exception:
            log.exception("thread %s: unexpected error in a turn", thread.key)
            return await self.skip_turn(start, entry.id, self._failed(thread, ThreadguardError("unexpected error")),
                                        go_on, forget=True)

    async def skip_turn(self, start: TurnStart, entry_id: str, outcome: Outcome, go_on: bool,
                        forget: bool = False) -> tuple[Outcome, TurnStart | None]:
        """Remove an inbox entry that gets no turn (its outcome explains why)."""
        thread = start.state.thread
        result = await self._retrying(thread, lambda: self.store.turns.drop_head(
            thread, start.token, entry_id, go_on=go_on, reminder_cooldown=None, forget=forget))
        return outcome, result.next

    async def pass_on(self, thread: ThreadRef, token: str, *, go_on: bool) -> CommitResult:
        """The posts of a turn committed with ``hold`` are out: the next inbox entry's start, or the lease
        handed back (``LOST_LOCK`` when a newer owner holds the thread)."""
        return await self.store.turns.pass_on(thread, token, go_on=go_on)

    async def _retrying(self, thread: ThreadRef, step: Callable[[], Awaitable[CommitResult]]) -> CommitResult:
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

    async def _answer(self, msg: IncomingMessage, start: TurnStart, config: CommunityConfig,
                      sink: TextSink | None, go_on: bool, hold: bool) -> tuple[Outcome, TurnStart | None]:
        text = msg.text
        ladder = start.state.ladder
        config = await self._member_config(msg, config)
        user_entry = Entry(EntryKind.USER, text, turn=ladder.turn, author_id=msg.author.id,
                           author_name=msg.author.name, message_id=msg.message_id, in_history=True,
                           attachments=list(msg.files) or None)
        turn = _Turn(ladder, [user_entry], people=await turn_people(self.store, self.starters, start, msg.author))
        try:
            return await self._answer_turn(msg, turn, start, config, sink, go_on, hold)
        finally:  # tokens are billed even when the turn then fails
            if not turn.accounted:
                await self._account(msg.thread, turn.usage)

    async def _answer_turn(self, msg: IncomingMessage, turn: _Turn, start: TurnStart, config: CommunityConfig,
                           sink: TextSink | None, go_on: bool, hold: bool) -> tuple[Outcome, TurnStart | None]:
        text, user_entry, ladder = msg.text, turn.entries[0], turn.ladder
        cut = window_cut(start.log, self.limits.history_token_budget, estimate_tokens(text) + refs_tokens(msg.files))
        idle = time.time() - start.log[-1].at if start.log else None
        streamed = await self._model_turn(msg.thread, turn, start.log[cut:], text, config, sink, idle)
        if user_entry.attachments:  # what the member's files lost on the way, named after the answer
            turn.replies[:0] = [Reply(ReplyKind.INFO, "\n".join(lines))
                                for lines in [left_out_lines(user_entry.attachments)] if lines]
        answer = turn.answer.strip() or ("" if turn.end else notices.empty_answer())
        if answer:
            turn.entries.insert(-1 if turn.end else len(turn.entries),
                                Entry(EntryKind.ASSISTANT, answer, turn=ladder.turn, in_history=not turn.refused))
            if not streamed or not turn.answer.strip() or turn.refused:
                turn.replies.insert(0, Reply(ReplyKind.ANSWER, answer))
                streamed = False
        if turn.refused:
            user_entry.in_history = False
        transcript = await self.store.turns.read_log(msg.thread) if turn.end else None
        # The turn's tokens are added by its commit (whatever the commit decides: they were billed either way).
        turn.accounted = True
        usage = self._counted(msg.thread, turn.usage)
        outcome, nxt = await self._commit(msg.thread, start, turn, start.state.jump_url or msg.jump_url,
                                          ended_by="model", entry_id=msg.dedupe_id, go_on=go_on,
                                          hold=hold and go_on and _posts_after_commit(turn),
                                          window_start=start.window_start + cut if cut else None,
                                          transcript=transcript, usage=usage if self.usage is not None else None,
                                          spend=self._spend(msg, config))
        if outcome.case is not None:
            await self._account_case(msg.thread, outcome.case, turn.totals)
        outcome.model_called = True
        outcome.streamed = streamed
        return outcome, nxt

    async def _model_turn(self, thread: ThreadRef, turn: _Turn, window: list[Entry], text: str,
                          config: CommunityConfig, sink: TextSink | None, idle: float | None) -> bool:
        """The tool loop over the window and the member's message with their files. A first request the API
        refuses while it carries files is sent again without them (the message's own first, then those of
        the history): the turn is answered, and a refused file never returns in later history."""
        user_entry = turn.entries[0]
        ids = [*(i for e in window if e.attachments for i in stored_ids(e.attachments)),
               *stored_ids(user_entry.attachments)]
        stored = await self.store.files.get(thread, ids) if ids else {}
        named = turn.people is not None and turn.people.shared
        if turn.people is not None:
            text = turn.people.line(text)
        while True:
            history = to_messages(window, stored, named=named)
            current = tuple(file_blocks(user_entry.attachments, stored))
            try:
                return await self._run_model(turn, history, text, config, sink, idle, thread.channel, current)
            except ModelRequestRejected:
                refused = self._refused_files(turn, history, current, stored)
                if not refused:
                    raise
                await self.store.files.drop(thread, refused)
                for file_id in refused:
                    stored.pop(file_id, None)

    def _refused_files(self, turn: _Turn, history: list[ModelMessage], current: tuple[Block, ...],
                       stored: dict[str, str]) -> list[str]:
        """The files to leave out after the API refused a request: none once a model call went through (the
        refusal is not about them); else the message's own, else every file of the history."""
        if turn.usage.calls:
            return []
        user_entry = turn.entries[0]
        own = [i for i in stored_ids(user_entry.attachments) if i in stored]
        if own and any(isinstance(b, FileBlock) for b in current):
            user_entry.attachments = [dropped(r, "the model could not read this file") if r.id in own else r
                                      for r in user_entry.attachments or ()]
            log.warning("the model API refused a request with %d new file(s): sent again without them", len(own))
            return own
        if any(isinstance(b, FileBlock) for m in history for b in m.blocks):
            log.warning("the model API refused a request with the history's files: sent again without them")
            return list(stored)
        return []

    async def _run_model(self, turn: _Turn, history: list[ModelMessage], text: str, config: CommunityConfig,
                         sink: TextSink | None, idle: float | None, channel: str,
                         files: tuple[Block, ...] = ()) -> bool:
        """The bounded tool loop. Returns whether answer text went out through ``sink``.

        Text from two model rounds (before and after a tool call) is joined by a paragraph break, on
        screen as in the stored answer.
        """
        blocks = (*files, TextBlock(text)) if text or not files else files
        speaker = turn.people.note() if turn.people is not None else None
        messages = [*history, ModelMessage("user", blocks,
                                           system_note=ladder_note(turn.ladder, config.threshold, speaker))]
        streamed = False
        separate = False
        voice = config.channel(channel)

        async def forward(delta: str) -> None:
            nonlocal streamed, separate
            if not delta:
                return
            if separate:
                separate = False
                delta = PARAGRAPH + delta.lstrip()
            streamed = True
            if sink is not None:
                await sink(delta)

        for _ in range(self.limits.max_tool_rounds):
            separate = bool(turn.answer.strip())
            request = ModelRequest(system_prompt(voice.persona), tuple(messages), cache_until=len(history) - 1,
                                   ladder=turn.ladder, threshold=config.threshold, idle_seconds=idle,
                                   model=voice.model)
            called = time.perf_counter()
            response = await self._respond(request, sink, forward)
            turn.usage.add(response.usage)
            self.metrics.model_call(time.perf_counter() - called, response.first_token_seconds)
            if response.stop_reason == "refusal":
                self._api_refusal(turn, config)
                return streamed
            turn.answer = _join(turn.answer, response.text)
            calls = response.tool_calls
            if not calls:
                break
            results = [ToolResultBlock(c.id, *self._apply(turn, c, config)) for c in calls]
            if turn.end is not None:
                break
            messages += [ModelMessage("assistant", tuple(response.blocks)),
                         ModelMessage("user", tuple(results))]
        return streamed

    async def _respond(self, request: ModelRequest, sink: TextSink | None,
                       forward: Callable[[str], Awaitable[None]]) -> ModelResponse:
        """One model call within its deadline; while it has not said a word, the member is shown the bot
        is working (every ``working_notice_seconds``)."""
        spoke = asyncio.Event()

        async def first(delta: str) -> None:
            if delta:
                spoke.set()
            await forward(delta)

        working = getattr(sink, "working", None)
        watch = asyncio.create_task(self._show_working(working, spoke)) if working is not None else None
        try:
            async with asyncio.timeout(self.limits.model_deadline_seconds):
                return await self.model.respond(request, first if sink is not None else None)
        except TimeoutError as exc:
            raise ModelTimedOut(f"no answer within {self.limits.model_deadline_seconds:.0f} s") from exc
        finally:
            if watch is not None:
                watch.cancel()

    async def _show_working(self, working: Callable[[], Awaitable[None]], spoke: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(spoke.wait(), self.limits.working_notice_seconds)
                return
            try:
                await working()
            except Exception as exc:  # a platform hiccup never stops the turn
                log.info("working notice not shown (%s)", type(exc).__name__)

    def _apply(self, turn: _Turn, call: ToolCall, config: CommunityConfig) -> tuple[str, bool]:
        verdict = apply_tool_call(turn.ladder, call, config.threshold, ended=turn.end is not None,
                                  starter=turn.people is None or turn.people.starter)
        turn.ladder = verdict.state
        self._record(turn, verdict, call.input, config)
        log.info("tool %s %s", call.name, "accepted" if verdict.accepted else "refused")
        return verdict.result, not verdict.accepted

    def _record(self, turn: _Turn, verdict: Verdict, data: dict[str, object], config: CommunityConfig) -> None:
        n = turn.ladder.turn
        note = str(data.get("note") or "")[:500]
        if verdict.redirection:
            turn.redirects += 1
            turn.entries.append(Entry(EntryKind.REDIRECTION, note, turn=n, category=verdict.redirection))
        if verdict.post_warning:
            turn.warned_turn = n
            text = texts.warning(config, verdict.redirection, turn.ladder.redirects)
            turn.entries.append(Entry(EntryKind.WARNING, text, turn=n, category=verdict.redirection))
            turn.replies.append(Reply(ReplyKind.WARNING, text,
                                      to=turn.people.warned(turn.entries) if turn.people is not None else ()))
        if verdict.risk_flagged:
            turn.entries.append(Entry(EntryKind.RISK, note, turn=n, category=verdict.risk_flagged))
        if verdict.post_crisis:
            turn.entries.append(Entry(EntryKind.CRISIS, config.crisis_resources, turn=n))
            turn.replies.append(Reply(ReplyKind.CRISIS, config.crisis_resources,
                                      to=turn.people.at_risk() if turn.people is not None else ()))
        if verdict.end:
            turn.end = verdict.end
            turn.entries.append(Entry(EntryKind.END, verdict.end.summary, turn=n, category=verdict.end.category))
        elif not verdict.accepted:
            turn.entries.append(Entry(EntryKind.NOTICE, f"Refused {verdict.result}"[:300], turn=n))

    def _api_refusal(self, turn: _Turn, config: CommunityConfig) -> None:
        """The API's own refusal stop counts as a redirection; the refused turn leaves the history."""
        turn.refused = True
        turn.answer = notices.refusal_answer()
        verdict = apply_tool_call(turn.ladder, _refusal_call(), config.threshold)
        turn.ladder = verdict.state
        turn.entries.append(Entry(EntryKind.REFUSAL, "The model API refused this turn.", turn=turn.ladder.turn))
        self._record(turn, verdict, {"note": "API refusal stop"}, config)

    async def _commit(self, thread: ThreadRef, start: TurnStart, turn: _Turn, jump_url: str | None,
                      ended_by: str, *, entry_id: str, go_on: bool = True, hold: bool = False,
                      window_start: int | None = None,
                      transcript: list[Entry] | None = None, usage: Usage | None = None,
                      spend: SpendCount | None = None) -> tuple[Outcome, TurnStart | None]:
        case = self._case(thread, start, turn, jump_url, ended_by, transcript) if turn.end else None
        ladder = start.state.ladder
        commit = TurnCommit(turn.entries, redirects=turn.redirects, warned_turn=turn.warned_turn,
                            at_risk=turn.ladder.at_risk and not ladder.at_risk,
                            crisis_posted=turn.ladder.crisis_posted and not ladder.crisis_posted,
                            jump_url=jump_url, end_case=case, entry_id=entry_id, window_start=window_start,
                            usage=usage, spend=spend)
        result = await self._retrying(thread, lambda: self.store.turns.commit_turn(thread, start.token, commit,
                                                                                   go_on=go_on, hold=hold))
        turn.totals = result.totals
        held = hold and result.next is None
        if result.status is CommitStatus.ALREADY_ENDED:
            return Outcome(thread, status=ThreadStatus.ENDED, frozen=True, held=held), result.next
        self.metrics.ladder(turn.entries)
        outcome = Outcome(thread, replies=turn.replies, held=held)
        outcome.spend_alerts = self._spend_alerts(thread, result.spend_alerts)
        if commit.at_risk:
            outcome.alert = await self._risk_flagged(thread, [*start.log, *turn.entries], jump_url)
        if result.status is CommitStatus.ENDED and case is not None and turn.end is not None:
            outcome.status = ThreadStatus.ENDED
            if turn.end.category in FILES_DELETED_ON_END:
                await self._delete_files(thread)
            config = self.communities.get(thread.community)
            outcome.replies.append(Reply(ReplyKind.FREEZE_NOTICE,
                                         texts.freeze_notice(config, thread, turn.end.reason, turn.end.category)))
            outcome.replies.extend(branch_offers(case, ended_by))
            try:
                outcome.case = await self.store.cases.file_end_case(thread, result.end_seq, case)
            except StoreUnavailable:
                # The freeze and the case body are already stored together; every running process
                # numbers it within seconds of Redis answering again (``reconcile``).
                log.warning("thread %s ended; numbering its case is deferred", thread.key)
                return outcome, result.next
            log.info("thread %s ended (%s), case %s", thread.key, turn.end.reason, outcome.case.case_id)
            await self._case_filed(outcome.case)
        return outcome, result.next

    def _spend(self, msg: IncomingMessage, config: CommunityConfig) -> SpendCount | None:
        """What a turn counts for the limits besides its usage (``None``: the community has none)."""
        return self.limiter.spend(msg.author.id, config) if config.limits.any else None

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
                await self.store.files.delete_thread(thread)
                log.info("thread %s: stored files deleted with its end", thread.key)
                return
            except StoreUnavailable:
                if time.monotonic() >= deadline:
                    log.error("thread %s: its stored files could not be deleted; they expire with it", thread.key)
                    return
                await asyncio.sleep(0.2)

    async def _member_config(self, msg: IncomingMessage, config: CommunityConfig) -> CommunityConfig:
        """The community's repeat policy may lower this member's threshold (warned at once)."""
        if self.member_records is None or not config.repeat_ends:
            return config
        try:
            threshold = await self.member_records.threshold_for(msg.thread.community, msg.author.id, config.threshold)
        except StoreUnavailable:
            return config
        return config if threshold == config.threshold else config.model_copy(update={"threshold": threshold})

    async def _risk_flagged(self, thread: ThreadRef, transcript: list[Entry], jump_url: str | None) -> Case | None:
        kind = next((e.category for e in reversed(transcript) if e.kind is EntryKind.RISK), None) or "self_harm"
        if self.member_records is None:
            return None
        try:
            return await self.member_records.risk_flagged(thread, kind, transcript, jump_url)
        except StoreUnavailable:
            log.warning("thread %s: risk flagged; the moderators' alert could not be filed", thread.key)
            return None

    async def _cases_filed(self, cases: list[Case]) -> None:
        """Cases numbered late (a failure left them pending) enter the members' end records too."""
        for case in cases:
            await self._case_filed(case)

    async def _case_filed(self, case: Case) -> None:
        if self.member_records is not None:
            try:
                await self.member_records.case_filed(case)
            except StoreUnavailable:
                log.warning("case %s of %s: the members' end history was not updated", case.case_id,
                            case.community)

    def _case(self, thread: ThreadRef, start: TurnStart, turn: _Turn, jump_url: str | None,
              ended_by: str, log_so_far: list[Entry] | None) -> Case:
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

    async def _account(self, thread: ThreadRef, usage: Usage) -> TokenTotals | None:
        """Add the tokens of a turn that commits nothing to the thread's and the community's day sums (one
        request); returns the thread's totals. A failure here costs the numbers, never the turn."""
        if self._counted(thread, usage) is None or self.usage is None:
            return None
        try:
            return await self.usage.record_turn(thread, usage, at=time.time())
        except ThreadguardError as exc:
            log.warning("thread %s: token usage not recorded (%s)", thread.key, type(exc).__name__)
            return None

    def _counted(self, thread: ThreadRef, usage: Usage) -> Usage | None:
        """A turn's tokens, counted in the metrics (``None``: it spent none)."""
        if usage.empty:
            return None
        self.metrics.usage(usage)
        log.debug("thread %s: turn tokens in=%d out=%d cache_write=%d cache_read=%d over %d call(s)", thread.key,
                  usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens,
                  usage.cache_read_input_tokens, usage.calls)
        return usage

    async def _account_case(self, thread: ThreadRef, case: Case, totals: TokenTotals | None) -> None:
        """File the thread's token totals with the case it just ended in."""
        if self.usage is None:
            return
        try:
            await self.usage.record_case(case.community, case.case_id,
                                         totals if totals is not None else await self.usage.thread(thread.key))
        except ThreadguardError as exc:
            log.warning("thread %s: token usage of case %s not recorded (%s)", thread.key, case.case_id,
                        type(exc).__name__)

    @staticmethod
    def _failed(thread: ThreadRef, exc: ThreadguardError) -> Outcome:
        log.warning("thread %s: %s (%s)", thread.key, type(exc).__name__, exc)
        return Outcome(thread, replies=[Reply(ReplyKind.ERROR, exc.user_message, ephemeral=True)])


PARAGRAPH = "\n\n"
#: Ends whose thread's stored files are deleted at once, not left to expire.
FILES_DELETED_ON_END = frozenset({"child_sexual_exploitation"})


def _join(before: str, after: str) -> str:
    """Answer text of two model rounds: a paragraph break between them, never glued together."""
    if not before.strip() or not after.strip():
        return before + after
    return before.rstrip() + PARAGRAPH + after.lstrip()


def _posts_after_commit(turn: _Turn) -> bool:
    """Whether the turn's outcome makes posts once committed (an answer not streamed, a warning, crisis
    resources, a freeze notice): its commit then keeps the thread until they are out."""
    return turn.end is not None or any(not r.ephemeral for r in turn.replies)


def _refusal_call() -> ToolCall:
    return ToolCall("api-refusal", "record_redirection", {"category": "other", "note": "API refusal stop"})


def _numbered(channel: ThreadRef, number: int) -> ThreadRef:
    if number == 0:
        return channel
    return ThreadRef(channel.platform, channel.community, channel.channel, f"{channel.thread}~{number}")


def _find_user_message(entries: list[Entry], message_id: str, author_id: str) -> int | None:
    for i, e in enumerate(entries):
        if e.kind is EntryKind.USER and e.message_id == message_id and e.author_id == author_id:
            return i
    return None
