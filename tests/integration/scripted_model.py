"""A scripted ``ModelClient`` (a fake of our own collaborator) for tests about the engine, not the SDK."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable

from bot.model import ModelRequest, ModelResponse, TextBlock, ToolResultBlock, ToolUseBlock, Usage
from bot.policy import ToolCall
from bot.types import TextSink

Decide = Callable[[str], list[TextBlock | ToolUseBlock]]


class ScriptedModel:
    """Answers each new user message with ``decide(text)``; after tool results, with a short text.

    Tracks how many calls are in flight at once (tests use it with one thread to prove serialization);
    reports ``usage`` for every call when given.
    """

    label = "scripted"
    offline = True

    def __init__(self, decide: Decide, delay: float = 0.0, usage: Usage | None = None) -> None:
        self.decide = decide
        self.delay = delay
        self.usage = usage
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._ids = itertools.count(1)

    def tool(self, name: str, **fields: str) -> ToolUseBlock:
        return ToolUseBlock(ToolCall(f"toolu_{next(self._ids)}", name, dict(fields)))

    async def respond(self, request: ModelRequest, sink: TextSink | None = None) -> ModelResponse:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            last = request.messages[-1]
            if any(isinstance(b, ToolResultBlock) for b in last.blocks):
                return ModelResponse([TextBlock("ok")], "end_turn", self._usage())
            text = " ".join(b.text for b in last.blocks if isinstance(b, TextBlock))
            blocks = self.decide(text)
            tools = any(isinstance(b, ToolUseBlock) for b in blocks)
            return ModelResponse(blocks, "tool_use" if tools else "end_turn", self._usage())
        finally:
            self.in_flight -= 1

    def _usage(self) -> Usage:
        return dataclasses.replace(self.usage) if self.usage is not None else Usage()

    async def aclose(self) -> None:
        return None
