"""Telling a thread what a dashboard action did (a reopen posts the engine's notice into the thread).

The dashboard holds no platform connection, so by default it queues the notice for the bot process of
that platform (``bot.thread_notices``), which unlocks the thread and posts it.
"""

from __future__ import annotations

from typing import Protocol

from bot.thread_notices import ThreadNotices
from bot.types import Outcome


class ThreadNotifier(Protocol):
    async def notify(self, action: str, outcome: Outcome, case_id: int) -> None: ...


class QueuedNotifier:
    """Queues thread notices for the Discord and Slack processes."""

    def __init__(self, notices: ThreadNotices) -> None:
        self.notices = notices

    async def notify(self, action: str, outcome: Outcome, case_id: int) -> None:
        await self.notices.queue_notice(outcome, action, case_id)
