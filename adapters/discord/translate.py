"""Pure translation between Discord objects and the core types (no I/O)."""

from __future__ import annotations

import re
from typing import Protocol

from bot.types import Author, ThreadRef

#: ``community`` of direct-message conversations.
DM_COMMUNITY = "dm"
THREAD_NAME_LIMIT = 90
_WHITESPACE = re.compile(r"\s+")


#: Where Discord serves attachments (their URLs are signed and expire).
DISCORD_FILE_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")


class AttachmentLike(Protocol):
    """What we read from a ``discord.Attachment``."""

    @property
    def filename(self) -> str: ...

    @property
    def content_type(self) -> str | None: ...

    @property
    def size(self) -> int: ...

    @property
    def url(self) -> str: ...


def file_wanted(attachment: AttachmentLike) -> tuple[str, str, int, str, str | None]:
    """(name, claimed type, claimed size, download URL, link) of an attachment, for ``adapters.downloads``."""
    return (attachment.filename, attachment.content_type or "application/octet-stream", int(attachment.size),
            attachment.url, attachment.url.split("?", 1)[0])


class AuthorLike(Protocol):
    """What we read from a ``discord.User`` / ``discord.Member``."""

    @property
    def id(self) -> int: ...

    @property
    def display_name(self) -> str: ...

    @property
    def bot(self) -> bool: ...


def author_of(user: AuthorLike) -> Author:
    roles = tuple(str(role.id) for role in getattr(user, "roles", ()) or ())  # a guild member's roles
    return Author(id=str(user.id), name=str(user.display_name), is_bot=bool(user.bot), roles=roles)


def thread_ref(guild_id: int, parent_id: int, thread_id: int) -> ThreadRef:
    """A conversation in a guild thread: community = guild, channel = parent channel."""
    return ThreadRef("discord", str(guild_id), str(parent_id), str(thread_id))


def dm_ref(channel_id: int) -> ThreadRef:
    """A conversation in a direct-message channel (the channel is the conversation)."""
    return ThreadRef("discord", DM_COMMUNITY, str(channel_id), str(channel_id))


def strip_bot_mention(content: str, bot_id: int) -> str:
    """The message text without the mentions of the bot that addressed it."""
    cleaned = re.sub(rf"<@!?{bot_id}>", " ", content)
    return _WHITESPACE.sub(" ", cleaned).strip() if cleaned != content else content.strip()


def thread_name(text: str, fallback: str = "Conversation") -> str:
    """A one-line thread title from the first message (Discord allows 100 characters)."""
    line = _WHITESPACE.sub(" ", re.sub(r"<[@#][!&]?\d+>", "", text)).strip()
    if not line:
        return fallback
    if len(line) <= THREAD_NAME_LIMIT:
        return line
    return line[: THREAD_NAME_LIMIT - 1].rstrip() + "…"


def thread_url(guild_id: str, thread_id: str) -> str:
    return f"https://discord.com/channels/{guild_id}/{thread_id}"


def ref_url(ref: ThreadRef) -> str:
    """A link to where the conversation lives (for a DM, the channel: its conversations share it)."""
    if ref.community == DM_COMMUNITY:
        return thread_url("@me", ref.channel)
    return thread_url(ref.community, ref.thread)


def channel_allowed(channel_id: str, global_allowed: tuple[str, ...], guild_allowed: tuple[str, ...]) -> bool:
    """Both the bot-wide list (``DISCORD_ALLOWED_CHANNELS``) and the guild's list must allow it."""
    return (not global_allowed or channel_id in global_allowed) and (not guild_allowed or channel_id in guild_allowed)
