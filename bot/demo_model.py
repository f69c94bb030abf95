"""An offline, deterministic stand-in for Claude, used when no API key is configured.

It is not a language model: it recognises a few phrases so that the whole ladder (redirections, the
warning, an end after the warning, a risk flag, a user-requested end) can be seen and tested without
network access. Everything it says starts with "(demo)" so nobody mistakes it for Claude.
"""

from __future__ import annotations

import itertools
import re

from bot.model import ModelRequest, ModelResponse, TextBlock, ToolResultBlock, ToolUseBlock, Usage
from bot.policy import ToolCall
from bot.types import TextSink

_HARM = (
    (re.compile(r"\b(build|make)\s+a\s+bomb\b|\bnerve\s+agent\b|\bbioweapon\b", re.I), "weapons_of_mass_harm"),
    (re.compile(r"\battack\s+plan\b|\bshoot\s+up\b|\bmassacre\b", re.I), "violent_extremism"),
    (re.compile(r"\byou\s+(worthless|pathetic)\b", re.I), "harassment"),
)
_RISK = re.compile(r"\b(kill|hurt|harm)\s+myself\b|\bend\s+my\s+life\b|\bsuicid", re.I)
_ASK_END = re.compile(r"\bend\s+(this|the)\s+conversation\b", re.I)
_CONFIRM_END = re.compile(r"^\s*yes,?\s+end\s+it\b", re.I)


class DemoModel:
    """Deterministic offline model speaking the same tool contract as Claude."""

    label = "offline demo model (not Claude)"
    offline = True

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def respond(self, request: ModelRequest, sink: TextSink | None = None) -> ModelResponse:
        response = self._decide(request)
        if sink is not None and response.text:
            for chunk in re.findall(r"\S+\s*", response.text):
                await sink(chunk)
        return response

    async def aclose(self) -> None:
        return None

    def _tool(self, name: str, **fields: str) -> ToolUseBlock:
        return ToolUseBlock(ToolCall(f"toolu_demo_{next(self._ids):04d}", name, dict(fields)))

    def _decide(self, request: ModelRequest) -> ModelResponse:
        last = request.messages[-1]
        results = [b for b in last.blocks if isinstance(b, ToolResultBlock)]
        if results:
            return self._after_tools(results)
        text = " ".join(b.text for b in last.blocks if isinstance(b, TextBlock))
        ladder = request.ladder
        if _RISK.search(text):
            return self._reply(
                "(demo) I'm really glad you told me. You don't have to go through this alone, and I'm "
                "here to keep talking. Is there someone near you, or a line you can reach right now?",
                self._tool("flag_risk", kind="self_harm", note="user mentioned harming themselves"))
        for pattern, category in _HARM:
            if not pattern.search(text):
                continue
            if ladder.warned and ladder.warned_turn < ladder.turn:
                return self._reply("", self._tool(
                    "end_conversation", reason="persistent_abuse", category=category,
                    summary="User kept asking for harmful help after repeated redirections and a warning."))
            return self._reply(
                "(demo) I can't help with that. If you're curious about chemistry or history, I'm happy "
                "to talk about those instead.",
                self._tool("record_redirection", category=category, note="declined a harmful request"))
        if _CONFIRM_END.search(text):
            return self._reply("", self._tool(
                "end_conversation", reason="user_requested", category="other",
                summary="The user asked to end the conversation and confirmed."))
        if _ASK_END.search(text):
            return self._reply(
                "(demo) I can end this conversation for you. Ending is permanent for this thread, though "
                "you can start a new conversation any time. Reply \"yes, end it\" to confirm.")
        snippet = " ".join(text.split())[:200]
        return self._reply(f"(demo) Thanks for your message. You said: \u201c{snippet}\u201d")

    def _after_tools(self, results: list[ToolResultBlock]) -> ModelResponse:
        if any(r.is_error for r in results):
            return self._reply("(demo) Let's keep talking then. What else is on your mind?")
        # Tools were accepted; an accepted end means the conversation is over: write nothing.
        return ModelResponse(blocks=[], stop_reason="end_turn")

    @staticmethod
    def _reply(text: str, *tools: ToolUseBlock) -> ModelResponse:
        blocks: list[TextBlock | ToolUseBlock] = [TextBlock(text)] if text else []
        blocks.extend(tools)
        return ModelResponse(blocks=blocks, stop_reason="tool_use" if tools else "end_turn",
                             usage=Usage(input_tokens=0, output_tokens=len(text.split()), calls=1))
