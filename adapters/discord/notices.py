"""The turn pipeline's delivery sink for Discord, and the relay of notices queued by other processes.

Every answer goes out through the sink, from the process that works on the thread (the turn pipeline may
run a thread's turn in another process than the one that received the message, after a crash or when that
process was busy): the answer streams into one message, with "typing…" shown from a moment after the turn
started until its outcome is carried out. Notices queued by processes without a Discord connection (a reopen on the
dashboard) are carried out here too: a ``reopen`` unlocks and unarchives the thread the way
``/threadguard reopen`` does, then posts the notice; an ``appeal`` decision is posted in the ended thread
to the member who appealed; any other action only posts its replies. The loops
that call the sink run in the core (``bot.worker``), the same for every platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord

from bot.bootstrap import Runtime
from bot.store.inbox_entry import InboxEntry
from bot.types import Case, Outcome, TextSink, ThreadNotice

from .conversations import Conversations, Place
from .replies import StreamingMessage, TypingIndicator

log = logging.getLogger(__name__)

PLATFORM = "discord"


class TypingStream:
    """A turn's answer on Discord: the ``StreamingMessage`` it grows in, and "typing…" shown while the turn
    runs (from ``delay`` after it started, see ``TypingIndicator``) until ``stop_typing``."""

    def __init__(self, channel: discord.abc.Messageable, *, interval: float, delay: float) -> None:
        self.message = StreamingMessage(channel, interval=interval)
        self._done = asyncio.Event()
        self._typing = asyncio.create_task(self._type(channel, delay), name="threadguard typing")

    async def _type(self, channel: discord.abc.Messageable, delay: float) -> None:
        async with TypingIndicator(channel, delay):
            await self._done.wait()

    async def __call__(self, delta: str) -> None:
        await self.message(delta)

    async def working(self) -> None:
        await self.message.working()

    async def stop_typing(self) -> None:
        self._done.set()
        with contextlib.suppress(Exception):
            await self._typing

    async def discard(self) -> None:
        """The turn was not committed (another process answers it): the typing stops; what was streamed
        stays, as Discord showed it."""
        await self.stop_typing()


class DiscordSink:
    """``DeliverySink`` for Discord."""

    def __init__(self, conversations: Conversations) -> None:
        self._conversations = conversations

    def stream(self, entry: InboxEntry) -> TextSink | None:
        conv = self._conversations
        return TypingStream(conv.channel_for(entry.thread), interval=conv.settings.stream_edit_interval,
                            delay=conv.typing_delay)

    async def deliver(self, entry: InboxEntry, outcome: Outcome, stream: TextSink | None) -> None:
        place = Place(entry.thread, self._conversations.channel_for(entry.thread))
        typing = stream if isinstance(stream, TypingStream) else None
        try:
            await self._conversations.deliver(place, outcome, typing.message if typing is not None else None)
        finally:
            if typing is not None:
                await typing.stop_typing()

    async def notice(self, notice: ThreadNotice) -> None:
        replies = [r for r in notice.replies if not r.ephemeral]  # nobody to show an ephemeral one to
        if notice.action == "reopen":
            await self._conversations.reopened(notice.thread, replies, member=notice.member)
        elif notice.action == "appeal":  # an appeal upheld: told in the ended thread, to the member
            await self._conversations.tell_in_ended(notice.thread, replies, member=notice.member)
        else:
            await self._conversations.post_replies(notice.thread, replies)

    async def case(self, case: Case) -> None:
        await self._conversations.modlog.post(case)


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
