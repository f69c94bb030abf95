"""Telling a thread what a dashboard action did (a reopen posts the engine's notice into the thread).

The dashboard holds no platform connection, so by default it hands the notice to the engine's queue for
the bot process of that platform (``ConversationEngine.queue_notice``), which unlocks the thread and
posts it.
"""

from __future__ import annotations

from typing import Protocol

from bot.engine import ConversationEngine
from bot.types import Outcome


class ThreadNotifier(Protocol):
    async def notify(self, action: str, outcome: Outcome, case_id: int) -> None: ...


class EngineNotifier:
    """Queues thread notices through the engine for the Discord and Slack processes."""

    def __init__(self, engine: ConversationEngine) -> None:
        self.engine = engine

    async def notify(self, action: str, outcome: Outcome, case_id: int) -> None:
        await self.engine.queue_notice(outcome, action, case_id)
