"""Discord as a delivery surface (``adapters.delivery``): where a conversation's posts go (its thread, or
for a conversation of a direct message the DM channel), how they are made (split past 2,000 characters,
mentions never pinging anyone but the member an appeal decision addresses, the appeal button under a
freeze notice), an ended thread locked and archived (and unlocked on reopen), and the mod-log.

Discord has no message only one member sees in a channel: a reply meant for the member alone is posted in
the conversation, and an error can stand in place of a streamed answer.

A streamed answer's last edit runs after its turn (``later``), when its channel's edit budget
(``pacing``) allows, at the latest before the thread is closed: an archived thread's messages can no
longer be edited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import discord

from bot.types import Case, Reply, ReplyKind, ThreadRef

from .freeze import ThreadLocker
from .modlog import ModLog
from .pacing import WINDOW_SECONDS, EditPacer
from .replies import StreamingMessage, TypingIndicator, send_text
from .shared import send_addressed
from .translate import DM_COMMUNITY

log = logging.getLogger(__name__)

#: How long closing a thread (or the process) waits for its answers' last edits: a final waits for about one
#: window of the channel's edit budget at most, finals queued ahead of it aside.
SHOWN_WITHIN = 2 * WINDOW_SECONDS


def channel_for(client: discord.Client, ref: ThreadRef) -> discord.PartialMessageable:
    """Where the bot posts in a conversation: its thread, or for a DM conversation the DM channel itself
    (the conversations of a DM are numbered, so their thread part may read ``123~2``)."""
    if ref.community == DM_COMMUNITY:
        return client.get_partial_messageable(int(ref.channel))
    return client.get_partial_messageable(int(ref.thread), guild_id=int(ref.community))


async def safe_send(channel: discord.abc.Messageable, text: str, *, ping: bool = False,
                    view: discord.ui.View | None = None, mention: str | None = None) -> bool:
    """Post ``text``; ``False`` (and one log line) when Discord refused it."""
    try:
        if mention is not None:  # one member, pinged by name (an appeal decision)
            await channel.send(f"<@{mention}> {text}"[:2000],
                               allowed_mentions=discord.AllowedMentions(users=[discord.Object(int(mention))]))
        elif view is not None:
            await channel.send(text[:2000], view=view, allowed_mentions=discord.AllowedMentions.none())
        elif ping:
            await channel.send(text, allowed_mentions=discord.AllowedMentions(users=True))
        else:
            await send_text(channel, text)
    except discord.HTTPException as exc:
        log.warning("could not post in channel %s (HTTP %s, code %s)", getattr(channel, "id", "?"),
                    exc.status, exc.code)
        return False
    return True


class DiscordSurface:
    """``Surface`` for Discord."""

    private_replies = False

    def __init__(self, client: discord.Client, locker: ThreadLocker, modlog: ModLog) -> None:
        self.client = client
        self.locker = locker
        self.modlog = modlog
        #: The appeal button under a freeze notice (set by the bot builder).
        self.appeal_view: Callable[[Case], discord.ui.View] | None = None
        #: The button under the line for bystanders of an ended shared thread (set by the bot builder).
        self.own_view: Callable[[ThreadRef], discord.ui.View] | None = None
        #: The edit budget every streamed answer of the process shares, per channel.
        self.pacer = EditPacer()
        #: Answers complete but perhaps not fully shown yet (their last edit waits for the channel), by thread.
        self._finishing: dict[str, set[StreamingMessage]] = {}
        self._later: set[asyncio.Task[None]] = set()

    def answer(self, thread: ThreadRef, *, interval: float, delay: float) -> AnswerMessage:
        """The stream a turn's answer grows in, its edits paced with every other answer's."""
        return AnswerMessage(channel_for(self.client, thread), thread.key, self, interval=interval, delay=delay)

    def later(self, work: Callable[[], Awaitable[None]], name: str) -> None:
        """``Delivery``'s ``later``: a streamed answer's last edit runs after the turn returned, so a final
        that waits for its channel's next edit never holds the thread's turn or slot."""
        async def run() -> None:
            await work()

        task = asyncio.create_task(run(), name=name)
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    @property
    def pending(self) -> int:
        """Answers' last edits still running after their turns."""
        return len(self._later)

    def finishing(self, thread_key: str, message: StreamingMessage) -> None:
        """``message`` is complete; its last edit may still be on its way when the thread is closed."""
        self._finishing.setdefault(thread_key, set()).add(message)

    def finished(self, thread_key: str, message: StreamingMessage) -> None:
        """``message`` is shown: closing its thread need not wait for it."""
        left = self._finishing.get(thread_key)
        if left is not None:
            left.discard(message)
            if not left:
                del self._finishing[thread_key]

    async def answers_shown(self, thread_key: str | None = None, within: float = SHOWN_WITHIN) -> None:
        """Wait (at most ``within`` seconds) until the answers finishing in a thread (in every thread:
        ``None``) are shown."""
        keys = [thread_key] if thread_key is not None else list(self._finishing)
        waits = [message.shown() for key in keys for message in self._finishing.pop(key, ())]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), within)

    async def post(self, thread: ThreadRef, reply: Reply, *, appeal: Case | None = None) -> bool:
        view = self.appeal_view(appeal) if appeal is not None and self.appeal_view is not None else None
        if reply.kind is ReplyKind.BRANCH_OFFER and self.own_view is not None:
            view = self.own_view(thread)
        channel = channel_for(self.client, thread)
        if reply.to:  # a shared thread: the members it is for are mentioned (and only they pinged)
            return self._posted(thread, reply, await send_addressed(channel, reply, view))
        return self._posted(thread, reply, await safe_send(channel, reply.text, view=view))

    async def post_privately(self, thread: ThreadRef, member: str, reply: Reply) -> None:
        await self.post(thread, reply)

    async def post_to_member(self, thread: ThreadRef, member: str, reply: Reply) -> bool:
        mention = member if member.isdigit() else None
        return self._posted(thread, reply, await safe_send(channel_for(self.client, thread), reply.text,
                                                           mention=mention))

    @staticmethod
    def _posted(thread: ThreadRef, reply: Reply, posted: bool) -> bool:
        if not posted:
            log.warning("thread %s: a %s reply was not posted", thread.key, reply.kind.value)
        return posted

    async def close(self, thread: ThreadRef) -> None:
        await self.answers_shown(thread.key)  # an archived thread's messages can no longer be edited
        await self.locker.freeze(thread)

    async def reopen(self, thread: ThreadRef) -> None:
        await self.locker.unfreeze(thread)

    async def close_again(self, thread: ThreadRef) -> None:
        await self.locker.rearchive(thread)

    async def log_case(self, case: Case) -> None:
        await self.modlog.post(case)

    async def log_alert(self, case: Case) -> None:
        await self.modlog.post_alert(case)

    async def log_line(self, community: str, text: str) -> None:
        await self.modlog.post_line(community, text)


class AnswerMessage:
    """A turn's answer on Discord (an ``AnswerStream``): the ``StreamingMessage`` it grows in, and
    "typing…" while the turn runs (from ``delay`` after it started, see ``TypingIndicator``) until its
    outcome was carried out (``done``) or the turn was abandoned (``discard``)."""

    def __init__(self, channel: discord.abc.Messageable, where: str, surface: DiscordSurface, *,
                 interval: float, delay: float) -> None:
        self.message = StreamingMessage(channel, interval=interval, pacer=surface.pacer, where=where)
        self._where = where
        self._surface = surface
        self._stop = asyncio.Event()
        self._typing = asyncio.create_task(self._type(channel, delay), name=f"threadguard typing {where}")

    async def _type(self, channel: discord.abc.Messageable, delay: float) -> None:
        async with TypingIndicator(channel, delay):
            await self._stop.wait()

    @property
    def started(self) -> bool:
        return self.message.started

    async def __call__(self, delta: str) -> None:
        await self.message(delta)

    async def working(self) -> None:
        await self.message.working()

    async def finish_behind(self) -> None:
        """The answer's messages stand once they are posted; the last edit follows (``finish``), before the
        thread is closed (``DiscordSurface.close``)."""
        self._surface.finishing(self._where, self.message)
        await self.message.finish_behind()

    async def finish(self) -> None:
        await self.message.finish()
        self._surface.finished(self._where, self.message)

    async def replace(self, text: str) -> None:
        await self.message.replace(text)

    async def discard(self) -> None:
        """Nothing more of this turn is shown here: the typing stops. What was streamed stays as it is (the
        member may have read it; the turn that answers the message again posts anew)."""
        await self.message.stop()
        await self.done()

    async def done(self) -> None:
        """The outcome was carried out: the typing stops, and the stream ends once what is left is shown."""
        self.message.close()
        self._stop.set()
        with contextlib.suppress(Exception):
            await self._typing
