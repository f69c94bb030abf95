"""Telling a thread what a dashboard action did (a reopen posts the engine's notice into the thread).

The dashboard holds no platform connection, so by default it queues the notice in Redis for the bot
process of that platform, which carries it out (unlock the thread, post the notice):

    tg:dash:outbox   list   JSON {"action", "thread", "platform", "case_id", "replies": [{kind, text}], "at"}
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from bot.types import Reply, ThreadRef

OUTBOX = "tg:dash:outbox"
OUTBOX_MAX = 10_000


class ThreadNotifier(Protocol):
    async def notify(self, action: str, thread: ThreadRef, case_id: int, replies: list[Reply]) -> None: ...


class OutboxNotifier:
    """Queues thread notices in ``tg:dash:outbox`` (oldest first) for the platform adapters."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def notify(self, action: str, thread: ThreadRef, case_id: int, replies: list[Reply]) -> None:
        item = {
            "action": action, "thread": thread.key, "platform": thread.platform, "case_id": case_id,
            "replies": [{"kind": r.kind.value, "text": r.text} for r in replies], "at": round(time.time(), 3),
        }
        await self.client.rpush(OUTBOX, json.dumps(item, ensure_ascii=False))
        await self.client.ltrim(OUTBOX, -OUTBOX_MAX, -1)
