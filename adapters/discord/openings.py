"""Opening messages: the mention in a channel that opens a conversation's thread.

A thread opened from a message shares the message's id, so the opening message (which stays in the
parent channel, outside the thread) still names its conversation: an edit of it after the conversation
ended branches from it like an edit in the thread. A mention with no text opens nothing: the member is
told, in a short reply, how to talk with the bot.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import discord

from bot.types import ThreadRef
from bot.validation import looks_empty

from .translate import strip_bot_mention, thread_ref

log = logging.getLogger(__name__)

HOW_TO = ("Hi! Mention me together with your question (for example `@threadguard how do tides work?`) and "
          "I'll answer in a thread. You can also use `/chat message:…`.")
_NO_PINGS = discord.AllowedMentions.none()


def mentions(message: discord.Message, user_id: int) -> bool:
    return any(u.id == user_id for u in message.mentions)


def is_bare_mention(message: discord.Message, bot_id: int) -> bool:
    """A mention of the bot with nothing a reader would see besides it and no files (those are read)."""
    return (mentions(message, bot_id) and looks_empty(strip_bot_mention(message.content, bot_id))
            and not message.attachments)


class BareMentions:
    """Replies with how to use the bot, where the member mentioned it; no thread, no model call.

    Once per message: the gateway replays events after a RESUME, and a shard's events always reach the
    process that runs it, so remembering the last ``keep`` message ids in this process is enough."""

    def __init__(self, keep: int = 1024) -> None:
        self._answered: OrderedDict[int, None] = OrderedDict()
        self._keep = keep

    async def answer(self, message: discord.Message) -> None:
        if message.id in self._answered:
            return
        self._answered[message.id] = None
        while len(self._answered) > self._keep:
            self._answered.popitem(last=False)
        try:
            await message.reply(HOW_TO, mention_author=False, allowed_mentions=_NO_PINGS)
        except discord.HTTPException as exc:
            log.warning("cannot answer a bare mention in channel %s (HTTP %s, code %s)", message.channel.id,
                        exc.status, exc.code)


def opening_ref(message: discord.Message, channel: object, bot_id: int) -> ThreadRef | None:
    """The conversation an opening message (a mention in the guild text ``channel`` it was posted in)
    started, if it is one. The engine knows whether that conversation exists and ended; an edit of a
    message that opened nothing changes nothing."""
    if not isinstance(channel, discord.TextChannel) or not mentions(message, bot_id):
        return None
    return thread_ref(channel.guild.id, channel.id, message.id)
