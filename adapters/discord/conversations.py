"""Member messages and edits: find the conversation, hand it to the member actions, carry out the outcome.

A member's message is accepted into its thread's inbox; its answer goes out through ``DiscordSink``
(``notices.py``) from whichever Discord process works on the thread, as on Slack.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import discord

from adapters.delivery import Delivery
from adapters.downloads import for_platform
from bot.errors import ThreadguardError
from bot.member_actions import MemberActions
from bot.store.inbox_entry import ReplyTarget
from bot.types import Attachment, EditedMessage, IncomingMessage, Outcome, Reply, ThreadNotice, ThreadRef
from config.communities import Communities
from config.discord import DiscordSettings

from .freeze import ThreadLocker
from .modlog import ModLog
from .openings import BareMentions, is_bare_mention, opening_ref
from .surface import DiscordSurface, channel_for, safe_send
from .translate import (
    DISCORD_FILE_HOSTS,
    DM_COMMUNITY,
    author_of,
    channel_allowed,
    dm_ref,
    file_wanted,
    ref_url,
    strip_bot_mention,
    thread_name,
    thread_ref,
)

log = logging.getLogger(__name__)

THREAD_EXISTS = 160004  # "A thread has already been created for this message"
_ANSWERING = (discord.MessageType.default, discord.MessageType.reply)


@dataclass(frozen=True)
class Place:
    """Where a conversation lives on Discord and in the engine."""

    ref: ThreadRef
    channel: discord.abc.Messageable


class Conversations:
    """Translates member messages into the member actions and posts what the engine decided."""

    def __init__(self, client: discord.Client, members: MemberActions, communities: Communities,
                 settings: DiscordSettings, locker: ThreadLocker, modlog: ModLog, *,
                 typing_delay: float = 0.3) -> None:
        self.client = client
        self.members = members
        self.communities = communities
        self.settings = settings
        self.locker = locker
        self.modlog = modlog
        self.typing_delay = typing_delay
        self.bare_mentions = BareMentions()
        self.downloads = for_platform(members.file_limits, DISCORD_FILE_HOSTS, settings.api_base_url)
        #: Where outcomes and notices are carried out (its ``appeal_view`` is set by the bot builder).
        self.surface = DiscordSurface(client, locker, modlog)
        self.delivery = Delivery(self.surface, later=self.surface.later)

    # --- routing -------------------------------------------------------------------------------

    def _me(self) -> discord.ClientUser:
        user = self.client.user
        assert user is not None, "the client is not logged in"
        return user

    def _addressed(self, message: discord.Message) -> bool:
        me = self._me().id
        return any(u.id == me for u in message.mentions)

    def allowed_in_guild(self, guild_id: int, parent_id: int) -> bool:
        gid = str(guild_id)
        if not self.settings.guild_allowed(gid):
            return False
        return channel_allowed(str(parent_id), self.settings.allowed_channels,
                               self.communities.get(gid).allowed_channels)

    async def _resolve(self, channel: object) -> object:
        """An uncached channel (e.g. an archived thread after a restart) is fetched once."""
        if isinstance(channel, discord.PartialMessageable):
            try:
                return await self.client.fetch_channel(channel.id)
            except discord.HTTPException as exc:
                log.debug("cannot fetch channel %s (%s)", channel.id, exc.status)
        return channel

    async def dm_place(self, channel: discord.abc.Messageable, *, fresh: bool = False) -> Place | None:
        """The conversation now running in a direct-message channel (``fresh``: start a new one).
        A DM has no threads, so the engine numbers the conversations held in it."""
        if not self.settings.allow_direct_messages:
            return None
        place = dm_ref(channel.id)  # type: ignore[attr-defined]
        ref = await (self.members.new_conversation_in(place) if fresh else self.members.conversation_in(place))
        return Place(ref, channel)

    async def dm_place_of_message(self, channel: discord.abc.Messageable, message_id: str) -> Place | None:
        """The DM conversation that holds ``message_id`` (an older, ended one too); else the current one."""
        place = await self.dm_place(channel)
        if place is None:
            return None
        found = await self.members.conversation_holding(dm_ref(channel.id), message_id)  # type: ignore[attr-defined]
        return Place(found, channel) if found is not None else place

    async def place_of(self, interaction: discord.Interaction, *, message_id: str | None = None) -> Place | None:
        """The conversation an interaction was used in: an allowed guild thread or a direct message
        (with ``message_id``: in a DM, the conversation holding that message)."""
        channel = interaction.channel
        if channel is None:
            return None
        if interaction.guild_id is None:
            if message_id is not None:
                return await self.dm_place_of_message(channel, message_id)  # type: ignore[arg-type]
            return await self.dm_place(channel)  # type: ignore[arg-type]
        if isinstance(channel, discord.Thread) and channel.parent_id is not None and \
                self.allowed_in_guild(interaction.guild_id, channel.parent_id):
            return Place(thread_ref(interaction.guild_id, channel.parent_id, channel.id), channel)
        return None

    async def place_for(self, message: discord.Message) -> Place | None:
        """The conversation a member message belongs to, opening a thread for a mention; ``None``
        when the bot should stay silent."""
        if message.guild is None:
            return await self.dm_place(message.channel)
        channel = await self._resolve(message.channel)
        if isinstance(channel, discord.Thread):
            if not self.allowed_in_guild(message.guild.id, channel.parent_id):
                return None
            if channel.owner_id != self._me().id and not self._addressed(message):
                return None
            return Place(thread_ref(message.guild.id, channel.parent_id, channel.id), channel)
        if isinstance(channel, discord.TextChannel) and self._addressed(message):
            if not self.allowed_in_guild(message.guild.id, channel.id):
                return None
            if is_bare_mention(message, self._me().id):  # nothing to answer: say how, open nothing
                await self.bare_mentions.answer(message)
                return None
            return await self._open_thread(message, channel)
        return None

    async def _open_thread(self, message: discord.Message, channel: discord.TextChannel) -> Place | None:
        text = strip_bot_mention(message.content, self._me().id)
        try:
            thread = await message.create_thread(name=thread_name(text), auto_archive_duration=1440)
            target: discord.abc.Messageable = thread
        except discord.HTTPException as exc:
            if exc.code != THREAD_EXISTS:  # a redelivered mention: the thread is already there
                log.warning("cannot open a thread in channel %s of guild %s (HTTP %s, code %s): grant the "
                            "bot Create Public Threads and Send Messages in Threads", channel.id,
                            channel.guild.id, exc.status, exc.code)
                return None
            target = self.client.get_partial_messageable(message.id, guild_id=channel.guild.id)
        ref = thread_ref(channel.guild.id, channel.id, message.id)  # a thread from a message shares its id
        return Place(ref, target)

    # --- events --------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.type not in _ANSWERING or self.client.user is None:
            return
        if message.author.id == self._me().id:
            return
        try:
            place = await self.place_for(message)
        except ThreadguardError as exc:  # finding a DM's current conversation needs the store
            log.warning("channel %s: %s", message.channel.id, type(exc).__name__)
            await safe_send(message.channel, exc.user_message)
            return
        if place is None:
            return
        text = strip_bot_mention(message.content, self._me().id)
        files = await self.downloads.fetch_all([file_wanted(a) for a in message.attachments])
        incoming = IncomingMessage(place.ref, author_of(message.author), text, message_id=str(message.id),
                                   jump_url=ref_url(place.ref) if place.ref.community != DM_COMMUNITY else None,
                                   attachments=files)
        log.debug("message %s in thread %s: %r", message.id, place.ref.key, text)
        await self.converse(place, incoming)

    async def converse(self, place: Place, incoming: IncomingMessage) -> None:
        """Into the thread's inbox (one Redis round trip); the turn's answer goes out through ``DiscordSink``
        from the process that works on the thread, what needs no turn (a reminder, a refusal) here."""
        ticket = await self.members.accept(incoming, target=ReplyTarget(incoming.author.id), wait=False)
        if ticket.accepted:
            log.info("thread %s: message %s from %s accepted", place.ref.key, incoming.message_id,
                     incoming.author.id)
        if ticket.outcome is not None:
            await self.deliver(ticket.outcome)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        message = payload.message
        if message.author.bot or "content" not in payload.data or self.client.user is None:
            return
        cached = payload.cached_message
        if cached is not None and cached.content == message.content and _file_ids(cached) == _file_ids(message):
            return  # an embed or unfurl update, not an edit by the member
        try:
            place = await self.place_for_edit(message)
        except ThreadguardError as exc:
            log.warning("channel %s: edit not handled (%s)", message.channel.id, type(exc).__name__)
            return
        if place is None:
            return
        text = strip_bot_mention(message.content, self._me().id)
        files = await self.downloads.fetch_all([file_wanted(a) for a in message.attachments])
        outcome, branch = await self.branch(place, message.author, str(message.id), text, files=files)
        if branch is None:
            await self.deliver(outcome)

    async def branch(self, place: Place, member: discord.abc.User, message_id: str, text: str, *,
                     event_id: str | None = None, files: tuple[Attachment, ...] = ()) -> tuple[Outcome, Place | None]:
        """Hand an edited message to the engine; when it branches, open the new thread, link both
        ways and post the answer there. Returns the outcome and the branch (``None``: no branch,
        the outcome's replies say why, or nothing when the conversation is still active)."""
        edit = EditedMessage(place.ref, author_of(member), message_id, text, event_id=event_id, attachments=files)
        opened: list[Place] = []

        async def open_branch(first_text: str) -> ThreadRef:
            branch = await self.open_branch(place, first_text, member)
            opened.append(branch)
            return branch.ref

        outcome = await self.members.handle_edit(edit, open_branch)
        if outcome.duplicate or outcome.branch is None or not opened:
            return outcome, None
        await self.link_branch(place, opened[0])
        await self.deliver(outcome)
        return outcome, opened[0]

    async def place_for_edit(self, message: discord.Message) -> Place | None:
        if message.guild is None:
            return await self.dm_place_of_message(message.channel, str(message.id))
        channel = await self._resolve(message.channel)
        opening = opening_ref(message, channel, self._me().id)  # the mention that opened a thread
        if opening is not None and self.allowed_in_guild(message.guild.id, int(opening.channel)):
            return Place(opening, self.channel_for(opening))
        if not isinstance(channel, discord.Thread) or not self.allowed_in_guild(message.guild.id, channel.parent_id):
            return None
        return Place(thread_ref(message.guild.id, channel.parent_id, channel.id), channel)

    # --- branches ------------------------------------------------------------------------------

    async def open_branch(self, old: Place, first_text: str, member: discord.abc.User) -> Place:
        """A new public thread in the same channel, for the conversation the engine seeds."""
        if old.ref.community == DM_COMMUNITY:  # no threads: a new numbered conversation in the same DM
            fresh = await self.dm_place(old.channel, fresh=True)
            assert fresh is not None
            await safe_send(old.channel, "Continuing from your edited message as a new conversation; "
                                         "the earlier one stays closed.")
            return fresh
        parent = self.client.get_partial_messageable(int(old.ref.channel), guild_id=int(old.ref.community))
        thread_data = await self.client.http.start_thread_without_message(
            parent.id, name=thread_name(first_text, "Branched conversation"), auto_archive_duration=1440,
            type=discord.ChannelType.public_thread.value, invitable=True,
            reason="threadguard: branch from an edited message")
        thread_id = int(thread_data["id"])
        branch = self.client.get_partial_messageable(thread_id, guild_id=int(old.ref.community))
        try:
            await self.client.http.add_user_to_thread(thread_id, member.id)
        except discord.HTTPException as exc:
            log.debug("could not add the member to branch thread %s (%s)", thread_id, exc.status)
        await safe_send(branch, f"{member.mention} continues from an edited message in "
                                f"{ref_url(old.ref)}. This is a new conversation; the earlier one stays "
                                "closed.", ping=True)
        return Place(thread_ref(int(old.ref.community), int(old.ref.channel), thread_id), branch)

    async def link_branch(self, old: Place, new: Place) -> None:
        """Point the ended thread at its branch (posting reopens the archive, so archive again)."""
        if old.ref.community == DM_COMMUNITY:
            return
        if await safe_send(old.channel, f"This conversation continues in a new thread: {ref_url(new.ref)}"):
            await self.locker.rearchive(old.ref)

    # --- posting where a conversation lives ----------------------------------------------------

    def channel_for(self, ref: ThreadRef) -> discord.PartialMessageable:
        """Where the bot posts in a conversation (``surface.channel_for``)."""
        return channel_for(self.client, ref)

    async def reopened(self, ref: ThreadRef, replies: Iterable[Reply]) -> None:
        """The conversation was reopened (``/threadguard reopen``): unlock and unarchive its thread, then post
        the notice, as a reopen the dashboard queued is carried out."""
        await self.delivery.notice(ThreadNotice(ref, "reopen", list(replies), None))

    async def deliver(self, outcome: Outcome) -> None:
        """Carry out an outcome awaited here (``adapters.delivery``): an edit's, the end command's, a refusal."""
        if outcome.duplicate:
            log.info("thread %s: duplicate event ignored", outcome.thread.key)
            return
        await self.delivery.outcome(outcome)


def _file_ids(message: discord.Message) -> list[int]:
    return [a.id for a in message.attachments]
