"""The conversation engine: one inbox entry turned into one committed turn, the ladder enforced, every end
a case.

How messages reach a turn (the inbox, leases, recovery) is ``bot.pipeline``, which calls ``run_turn`` for
the head of a thread's inbox; what members do (send, edit, end) is ``bot.member_actions``. This module
imports neither: it is the turn. Its parts: ``bot.turn_model`` runs the model and its tools,
``bot.turn_commit`` stores the turn and builds and files an end's case, ``bot.case_filing`` numbers cases.
"""

from __future__ import annotations

import logging
import time

from bot.backoff import ModelBackoff
from bot.case_filing import CaseFiling, MemberRecords
from bot.errors import LeaseLost, ModelBackingOff, ModelError, ModelRateLimited, StoreUnavailable, ThreadguardError
from bot.files import left_out_lines, refs_tokens
from bot.held_messages import HeldMessages
from bot.history import estimate_tokens, window_cut
from bot.limits import Limiter, SpendCount
from bot.metrics import Metrics, outcome_kind
from bot.model import ModelClient, Usage
from bot.participants import people_of
from bot.policy import EndDecision
from bot.shared import Starters, turn_people
from bot.store import Store, TurnStart
from bot.store.inbox_entry import InboxEntry
from bot.turn_commit import TurnCommitter, posts_after_commit
from bot.turn_model import ToolLoop, TurnDraft
from bot.types import (
    Author,
    Entry,
    EntryKind,
    IncomingMessage,
    Outcome,
    Reply,
    ReplyKind,
    TextSink,
    ThreadRef,
    ThreadStatus,
)
from bot.usage import TokenTotals, UsageRecorder
from config.communities import Communities, CommunityConfig
from config.settings import EngineSettings

from . import notices, texts

log = logging.getLogger(__name__)


class ConversationEngine:
    """Answers the head of a thread's inbox in a committed turn, for every platform (the pipeline's
    ``TurnRunner``), and commits the member's end command (moderator actions: ``bot.moderation``)."""

    def __init__(self, store: Store, model: ModelClient, communities: Communities, limits: EngineSettings,
                 backoff: ModelBackoff, case_filing: CaseFiling, *, usage: UsageRecorder | None = None,
                 metrics: Metrics | None = None, member_records: MemberRecords | None = None,
                 limiter: Limiter | None = None) -> None:
        self.store = store
        self.model = model
        self.communities = communities
        self.limits = limits
        self.usage = usage
        self.metrics = metrics or Metrics()
        #: Numbers and files the cases of ends (and the token totals they ended with).
        self.case_filing = case_filing
        #: The review desk's repeat policy (a member's threshold after earlier ends).
        self.member_records = member_records
        #: Members' and the community's limits: what a turn counts toward them and the words they need.
        self.limiter = limiter or Limiter()
        #: The model API's back-off, shared by every worker.
        self.backoff = backoff
        self.committer = TurnCommitter(store.turns, store.files, communities, limits, case_filing, self.limiter,
                                       self.metrics)
        #: Messages limits kept, answered when they reset.
        self.held = HeldMessages(store.inbox, store.backoff, self.limiter)
        #: Starters of threads whose window moved past their first lines (``bot.shared``).
        self.starters = Starters()

    # --- the member's end command ------------------------------------------------------------

    async def end_turn(self, thread: ThreadRef, start: TurnStart, author: Author,
                       jump_url: str | None, *, moderator: bool = False) -> tuple[Outcome, TurnStart | None]:
        """The member's end command as a turn of its own (no model call), under the lease ``start`` holds:
        freeze the thread and file its case. Returns the outcome and the next inbox entry's start.
        ``moderator``: a moderator ended it (not the member who started it)."""
        ladder = start.state.ladder
        end = EndDecision("user_requested", "other", "The member ended the conversation with /end.")
        entry = Entry(EntryKind.END, "Ended by the member's end command.", turn=ladder.turn,
                      author_id=author.id, author_name=author.name)
        turn = TurnDraft(ladder, [entry], end=end)
        by = "moderator" if moderator and author.id != people_of(start.log).starter else "user"
        return await self.committer.commit(thread, start, turn, jump_url, ended_by=f"{by}:{author.id}",
                                           entry_id="", transcript=start.log)

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
            result = await self.committer.fenced(thread, lambda: self.store.turns.drop_head(
                thread, start.token, entry.id, go_on=go_on, reminder_cooldown=config.frozen_reminder_cooldown))
            replies = [Reply(ReplyKind.FROZEN_REMINDER, texts.frozen_reminder(config, thread), ephemeral=True)]
            return Outcome(thread, status=ThreadStatus.ENDED, frozen=True,
                           replies=replies if result.remind else []), result.next
        await self.held.take_up(start, entry, config)  # a message a limit kept: still over it, it waits
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
            return await self.skip_turn(start, entry.id, failed_outcome(thread, exc), go_on, forget=True)
        except Exception:
            log.exception("thread %s: unexpected error in a turn", thread.key)
            return await self.skip_turn(start, entry.id, failed_outcome(thread, ThreadguardError("unexpected error")),
                                        go_on, forget=True)

    async def skip_turn(self, start: TurnStart, entry_id: str, outcome: Outcome, go_on: bool,
                        forget: bool = False) -> tuple[Outcome, TurnStart | None]:
        """Remove an inbox entry that gets no turn (its outcome explains why)."""
        thread = start.state.thread
        result = await self.committer.fenced(thread, lambda: self.store.turns.drop_head(
            thread, start.token, entry_id, go_on=go_on, reminder_cooldown=None, forget=forget))
        return outcome, result.next

    async def _answer(self, msg: IncomingMessage, start: TurnStart, config: CommunityConfig,
                      sink: TextSink | None, go_on: bool, hold: bool) -> tuple[Outcome, TurnStart | None]:
        text = msg.text
        ladder = start.state.ladder
        config = await self._member_config(msg, config)
        user_entry = Entry(EntryKind.USER, text, turn=ladder.turn, author_id=msg.author.id,
                           author_name=msg.author.name, message_id=msg.message_id, in_history=True,
                           attachments=list(msg.files) or None)
        turn = TurnDraft(ladder, [user_entry], people=await turn_people(self.store, self.starters, start, msg.author))
        try:
            return await self._answer_turn(msg, turn, start, config, sink, go_on, hold)
        finally:  # tokens are billed even when the turn then fails
            if not turn.accounted:
                await self._account(msg.thread, turn.usage)

    async def _answer_turn(self, msg: IncomingMessage, turn: TurnDraft, start: TurnStart, config: CommunityConfig,
                           sink: TextSink | None, go_on: bool, hold: bool) -> tuple[Outcome, TurnStart | None]:
        text, user_entry, ladder = msg.text, turn.entries[0], turn.ladder
        cut = window_cut(start.log, self.limits.history_token_budget, estimate_tokens(text) + refs_tokens(msg.files))
        idle = time.time() - start.log[-1].at if start.log else None
        loop = ToolLoop(self.model, self.store.files, self.limits, self.metrics)
        streamed = await loop.run(msg.thread, turn, start.log[cut:], text, config, sink, idle)
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
        outcome, nxt = await self.committer.commit(msg.thread, start, turn, start.state.jump_url or msg.jump_url,
                                                   ended_by="model", entry_id=msg.dedupe_id, go_on=go_on,
                                                   hold=hold and go_on and posts_after_commit(turn),
                                                   window_start=start.window_start + cut if cut else None,
                                                   transcript=transcript,
                                                   usage=usage if self.usage is not None else None,
                                                   spend=self._spend(msg, config))
        if outcome.case is not None:
            await self.case_filing.record_usage(msg.thread, outcome.case, turn.totals)
        outcome.model_called = True
        outcome.streamed = streamed
        return outcome, nxt

    async def _member_config(self, msg: IncomingMessage, config: CommunityConfig) -> CommunityConfig:
        """The community's repeat policy may lower this member's threshold (warned at once)."""
        if self.member_records is None or not config.repeat_ends:
            return config
        try:
            threshold = await self.member_records.threshold_for(msg.thread.community, msg.author.id, config.threshold)
        except StoreUnavailable:
            return config
        return config if threshold == config.threshold else config.model_copy(update={"threshold": threshold})

    def _spend(self, msg: IncomingMessage, config: CommunityConfig) -> SpendCount | None:
        """What a turn counts for the limits besides its usage (``None``: the community has none)."""
        return self.limiter.spend(msg.author.id, config)

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


def failed_outcome(thread: ThreadRef, exc: ThreadguardError) -> Outcome:
    """What the member is told when an event in ``thread`` failed: the error's own plain words, privately."""
    log.warning("thread %s: %s (%s)", thread.key, type(exc).__name__, exc)
    return Outcome(thread, replies=[Reply(ReplyKind.ERROR, exc.user_message, ephemeral=True)])
