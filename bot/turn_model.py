"""The model's side of a turn: the bounded tool loop over the history window and the member's message
(with their files), the ladder's tools applied as the model calls them, the API's own refusal counted as a
redirection, and the member shown that the bot is working while a call stays silent.

``TurnDraft`` is what one turn produced before it is committed (``bot.turn_commit``). The loop writes
nothing to Redis but dropping a file the API refused to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.errors import ModelRequestRejected, ModelTimedOut
from bot.files import dropped, file_blocks, stored_ids
from bot.history import to_messages
from bot.metrics import Metrics
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
from bot.policy import EndDecision, ToolCall, Verdict, apply_tool_call
from bot.shared import TurnPeople
from bot.store import AttachmentStore
from bot.types import Entry, EntryKind, LadderState, Reply, ReplyKind, TextSink, ThreadRef
from bot.usage import TokenTotals
from config.communities import CommunityConfig
from config.settings import EngineSettings

from . import notices, texts

log = logging.getLogger(__name__)

PARAGRAPH = "\n\n"


@dataclass
class TurnDraft:
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


class ToolLoop:
    """Runs the model for one turn and records what its tool calls did to the ladder in the draft."""

    def __init__(self, model: ModelClient, files: AttachmentStore, limits: EngineSettings, metrics: Metrics) -> None:
        self.model = model
        self.files = files
        self.limits = limits
        self.metrics = metrics

    async def run(self, thread: ThreadRef, turn: TurnDraft, window: list[Entry], text: str,
                  config: CommunityConfig, sink: TextSink | None, idle: float | None) -> bool:
        """The tool loop over the window and the member's message with their files; returns whether answer
        text went out through ``sink``. A first request the API refuses while it carries files is sent again
        without them (the message's own first, then those of the history): the turn is answered, and a
        refused file never returns in later history."""
        user_entry = turn.entries[0]
        ids = [*(i for e in window if e.attachments for i in stored_ids(e.attachments)),
               *stored_ids(user_entry.attachments)]
        stored = await self.files.get(thread, ids) if ids else {}
        named = turn.people is not None and turn.people.shared  # a shared thread: each line with its speaker
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
                await self.files.drop(thread, refused)
                for file_id in refused:
                    stored.pop(file_id, None)

    def _refused_files(self, turn: TurnDraft, history: list[ModelMessage], current: tuple[Block, ...],
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

    async def _run_model(self, turn: TurnDraft, history: list[ModelMessage], text: str, config: CommunityConfig,
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
            turn.answer = _join_answers(turn.answer, response.text)
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

    def _apply(self, turn: TurnDraft, call: ToolCall, config: CommunityConfig) -> tuple[str, bool]:
        verdict = apply_tool_call(turn.ladder, call, config.threshold, ended=turn.end is not None,
                                  starter=turn.people is None or turn.people.starter)
        turn.ladder = verdict.state
        _record(turn, verdict, call.input, config)
        log.info("tool %s %s", call.name, "accepted" if verdict.accepted else "refused")
        return verdict.result, not verdict.accepted

    def _api_refusal(self, turn: TurnDraft, config: CommunityConfig) -> None:
        """The API's own refusal stop counts as a redirection; the refused turn leaves the history."""
        turn.refused = True
        turn.answer = notices.refusal_answer()
        verdict = apply_tool_call(turn.ladder, _refusal_call(), config.threshold)
        turn.ladder = verdict.state
        turn.entries.append(Entry(EntryKind.REFUSAL, "The model API refused this turn.", turn=turn.ladder.turn))
        _record(turn, verdict, {"note": "API refusal stop"}, config)


def _record(turn: TurnDraft, verdict: Verdict, data: dict[str, object], config: CommunityConfig) -> None:
    """What a tool call did, in the turn's log entries and the replies it posts (the warning, the crisis
    resources)."""
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


def _join_answers(before: str, after: str) -> str:
    """Answer text of two model rounds: a paragraph break between them, never glued together."""
    if not before.strip() or not after.strip():
        return before + after
    return before.rstrip() + PARAGRAPH + after.lstrip()


def _refusal_call() -> ToolCall:
    return ToolCall("api-refusal", "record_redirection", {"category": "other", "note": "API refusal stop"})
