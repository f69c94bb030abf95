"""The turn pipeline's delivery sink for Discord, and the relay of notices queued by other processes.

Every answer goes out through the sink, from the process that works on the thread (the turn pipeline may
run a thread's turn in another process than the one that received the message, after a crash or when that
process was busy): the answer streams into one message, with "typing…" shown from a moment after the turn
started until its outcome is carried out (``adapters.delivery``). Its edits are paced per channel, off the
turn (``replies``, ``pacing``): the turn is over once the answer's messages are posted, its last edit
follows. Notices queued by processes without a Discord connection (a reopen on the dashboard) are carried
out here too: a ``reopen`` unlocks and unarchives the thread the way ``/threadguard reopen`` does, then
posts the notice; an ``appeal`` decision is posted in the ended thread to the member who appealed; any
other action only posts its replies. The loops that call the sink run in the core (``bot.worker``), the
same for every platform.
"""

from __future__ import annotations

import logging

from bot.bootstrap import Runtime
from bot.store.inbox_entry import InboxEntry
from bot.types import Case, Outcome, TextSink, ThreadNotice

from .conversations import Conversations
from .surface import AnswerMessage

log = logging.getLogger(__name__)

PLATFORM = "discord"


class DiscordSink:
    """``DeliverySink`` for Discord."""

    def __init__(self, conversations: Conversations) -> None:
        self._conversations = conversations

    def stream(self, entry: InboxEntry) -> TextSink | None:
        conv = self._conversations
        return conv.surface.answer(entry.thread, interval=conv.settings.stream_edit_interval,
                                   delay=conv.typing_delay)

    async def deliver(self, entry: InboxEntry, outcome: Outcome, stream: TextSink | None) -> None:
        answer = stream if isinstance(stream, AnswerMessage) else None
        try:
            await self._conversations.delivery.outcome(outcome, entry.target.user, answer)
        finally:
            if answer is not None:
                await answer.done()

    async def notice(self, notice: ThreadNotice) -> None:
        await self._conversations.delivery.notice(notice)

    async def case(self, case: Case) -> None:
        await self._conversations.surface.log_case(case)


class NoticeRelay:
    """The Discord side of the core's background duties: registers the sink, starts and stops the loops
    (recovery, late cases, queued notices every ``interval`` seconds)."""

    def __init__(self, runtime: Runtime, conversations: Conversations, *, interval: float) -> None:
        self._runtime = runtime
        runtime.pipeline.register_sink(PLATFORM, DiscordSink(conversations))
        runtime.worker_polling_notices(interval)

    @property
    def running(self) -> bool:
        return self._runtime.worker.running

    def start(self) -> None:
        """Start the loops (again after a reconnect: running loops are kept)."""
        self._runtime.worker.start()

    async def stop(self) -> None:
        """Take no more threads; running turns finish within the grace, their leases are handed back."""
        await self._runtime.worker.stop()

    async def poll(self) -> int:
        """Carry out the notices waiting now; returns how many were taken."""
        return await self._runtime.worker.relay_notices_once()
