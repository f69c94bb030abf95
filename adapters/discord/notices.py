"""Thread notices queued by processes without a Discord connection (a reopen on the dashboard).

The bot polls the engine's queue for Discord in a background task and carries each notice out: a
``reopen`` unlocks and unarchives the thread the way ``/threadguard reopen`` does, then posts the notice;
any other action only posts its replies. A failure is logged with the thread key and the relay goes on.
"""

from __future__ import annotations

import asyncio
import logging

from bot.engine import ConversationEngine
from bot.errors import ThreadguardError
from bot.types import ThreadNotice

from .conversations import Conversations

log = logging.getLogger(__name__)

PLATFORM = "discord"


class NoticeRelay:
    """Takes up to ``batch`` notices every ``interval`` seconds (at once again while a full batch came)."""

    def __init__(self, engine: ConversationEngine, conversations: Conversations, *, interval: float,
                 batch: int = 20) -> None:
        self._engine = engine
        self._conversations = conversations
        self._interval = interval
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start polling in the background (again after a reconnect: a running relay is kept)."""
        if not self.running:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="threadguard discord notices")

    async def stop(self) -> None:
        """Cancel the polling task and wait for it (a notice being posted is cut short)."""
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=5)

    async def poll(self) -> int:
        """Carry out the notices waiting now; returns how many were taken."""
        try:
            notices = await self._engine.take_notices(PLATFORM, limit=self._batch)
        except ThreadguardError as exc:
            log.warning("could not take thread notices for %s (%s); trying again", PLATFORM, type(exc).__name__)
            return 0
        for notice in notices:
            await self.carry_out(notice)
        return len(notices)

    async def carry_out(self, notice: ThreadNotice) -> None:
        replies = [r for r in notice.replies if not r.ephemeral]  # nobody to show an ephemeral one to
        try:
            if notice.action == "reopen":
                await self._conversations.reopened(notice.thread, replies, member=notice.member)
            elif notice.action == "appeal":
                await self._conversations.tell_in_ended(notice.thread, replies, member=notice.member)
            else:
                await self._conversations.post_replies(notice.thread, replies)
        except Exception:
            log.exception("thread %s: the %s notice (case %s) failed", notice.thread.key, notice.action,
                          notice.case_id)
        else:
            log.info("thread %s: %s notice carried out (case %s)", notice.thread.key, notice.action,
                     notice.case_id)

    async def _run(self) -> None:
        # A flag as well as cancel(): a cancellation that lands inside a Redis call can come back as a
        # connection error, which the relay logs and survives.
        while not self._stopping:
            try:
                taken = await self.poll()
            except Exception:
                log.exception("the thread notice relay failed; trying again")
                taken = 0
            if taken < self._batch:
                await asyncio.sleep(self._interval)
