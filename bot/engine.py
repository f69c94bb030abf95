"""The conversation engine: one inbox entry turned into one committed turn, the ladder enforced, every end
a case.

How messages reach a turn (the inbox, leases, recovery) is ``bot.pipeline``, which calls ``run_turn`` for
the head of a thread's inbox; what members do (send, edit, end) is ``bot.member_actions``. This module
imports neither: it is the turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.backoff import ModelBackoff
from bot.case_filing import CaseFiling, MemberRecords
from bot.errors import (
    LeaseLost,
    ModelBackingOff,
    ModelError,
    ModelRateLimited,
    ModelRequestRejected,
    ModelTimedOut,
    StoreUnavailable,
    ThreadguardError,
)
from bot.files import dropped, file_blocks, left_out_lines, refs_tokens, stored_ids
from bot.history import estimate_tokens, to_messages, window_cut
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
from bot.policy import EndDecision, ToolCall, Verdict, apply_tool_call
from bot.shared import Starters, TurnPeople, branch_offers, turn_people
from bot.store import CommitResult, CommitStatus, Store, TurnCommit, TurnStart
from bot.store.inbox_entry import InboxEntry
from bot.types import (
    Author,
    Case,
    Entry,
    EntryKind,
    IncomingMessage,
    LadderState,
    Outcome,
    Reply,
    ReplyKind,
    TextSink,
    ThreadRef,
    ThreadStatus,
    iso,
)
from bot.usage import TokenTotals, UsageRecorder
from config.communities import Communities, CommunityConfig
from config.settings import EngineSettings

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
        #: Numbers and files the cases of ends, and tells the review desk (members' records, risk alerts).
        self.case_filing = case_filing
        #: The review desk's repeat policy (a member's threshold after earlier ends).
        self.member_records = member_records
        #: Members' and the community's limits: what a turn counts toward them and the words they need.
        self.limiter = limiter or Limiter()
        #: The model API's back-off, shared by every worker.
        self.backoff = backoff
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
        turn = _Turn(ladder, [entry], end=end)
        by = "moderator" if moderator and author.id != people_of(start.log).starter else "user"
        return await self._commit(thread, start, turn, jump_url, ended_by=f"{by}:{author.id}",
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
            return await self.skip_turn(start, entry.id, failed_outcome(thread, exc), go_on, forget=True)
        except Exception:
            log.exception("thread %s: unexpected error in a turn", thread.key)
            return await self.skip_turn(start, entry.id, failed_outcome(thread, ThreadguardError("unexpected error")),
                                        go_on, forget=True)

    async def skip_turn(self, start: TurnStart, entry_id: str, outcome: Outcome, go_on: bool,
                        forget: bool = False) -> tuple[Outcome, TurnStart | None]:
        """Remove an inbox entry that gets no turn (its outcome explains why)."""
        thread = start.state.thread
        result = await self._retrying(thread, lambda: self.store.turns.drop_head(
            thread, start.token, entry_id, go_on=go_on, reminder_cooldown=None, forget=forget))
        return outcome, result.next

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
            await self.case_filing.record_usage(msg.thread, outcome.case, turn.totals)
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
            outcome.alert = await self.case_filing.risk_flagged(thread, [*start.log, *turn.entries], jump_url)
        if result.status is CommitStatus.ENDED and case is not None and turn.end is not None:
            outcome.status = ThreadStatus.ENDED
            if turn.end.category in FILES_DELETED_ON_END:
                await self._delete_files(thread)
            config = self.communities.get(thread.community)
            outcome.replies.append(Reply(ReplyKind.FREEZE_NOTICE,
                                         texts.freeze_notice(config, thread, turn.end.reason, turn.end.category)))
            outcome.replies.extend(branch_offers(case, ended_by))
            # ``None`` when Redis failed: the freeze and the case body are already stored together, and
            # every running process numbers it within seconds of Redis answering again.
            outcome.case = await self.case_filing.file_end(thread, result.end_seq, case)
            if outcome.case is not None:
                log.info("thread %s ended (%s), case %s", thread.key, turn.end.reason, outcome.case.case_id)
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


def failed_outcome(thread: ThreadRef, exc: ThreadguardError) -> Outcome:
    """What the member is told when an event in ``thread`` failed: the error's own plain words, privately."""
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
