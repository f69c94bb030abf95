"""Shared threads on Discord: replies addressed to members (mentioned, and pinged: only they), and the button
under the line that tells bystanders of an ended thread they can continue in a thread of their own.

The button's ``custom_id`` carries the ended thread (``tg:own:<thread id>``), so it works after a restart and
on any replica; the member actions decide whether the member who clicked may (``continue_as_own``), and they are
answered privately.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.errors import ThreadguardError
from bot.member_actions import MemberActions
from bot.types import Reply, ThreadRef

from .replies import MESSAGE_LIMIT, answer_privately
from .translate import author_of, ref_url, thread_ref

log = logging.getLogger(__name__)

TEMPLATE = r"tg:own:(?P<thread>\d{1,20})"
LABEL = "Continue in my own conversation"
LOST = "I can't find that conversation any more."
FAILED = "Something went wrong on my side. Please try again in a moment."

Clicked = Callable[[discord.Interaction, str], Awaitable[None]]


def _ids(reply: Reply) -> list[int]:
    return [int(m) for m in reply.to if m.isdigit()]


async def send_addressed(channel: discord.abc.Messageable, reply: Reply, view: discord.ui.View | None = None) -> bool:
    """Post a reply addressed to members: their mentions first, pinging them and nobody else."""
    ids = _ids(reply)
    text = " ".join(f"<@{m}>" for m in ids) + (" " if ids else "") + reply.text
    mentions = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(m) for m in ids])
    try:
        if view is not None:
            await channel.send(text[:MESSAGE_LIMIT], view=view, allowed_mentions=mentions)
        else:
            await channel.send(text[:MESSAGE_LIMIT], allowed_mentions=mentions)
    except discord.HTTPException as exc:
        log.warning("could not post in channel %s (HTTP %s, code %s)", getattr(channel, "id", "?"), exc.status,
                    exc.code)
        return False
    return True


def own_button_type(clicked: Clicked) -> type[discord.ui.DynamicItem[discord.ui.Button[Any]]]:
    """The button class; register it with ``client.add_dynamic_items`` at start-up."""

    class OwnButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
        def __init__(self, thread: str) -> None:
            super().__init__(discord.ui.Button(label=LABEL, style=discord.ButtonStyle.primary,
                                               custom_id=f"tg:own:{thread}"))
            self.thread = thread

        @classmethod
        async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                                 match: re.Match[str], /) -> OwnButton:
            return cls(match["thread"])

        async def callback(self, interaction: discord.Interaction) -> None:
            await clicked(interaction, self.thread)

    return OwnButton


def own_view(button_type: type[discord.ui.DynamicItem[discord.ui.Button[Any]]], ref: ThreadRef) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(button_type(ref.thread))  # type: ignore[arg-type]
    return view


class OwnConversations:
    """A bystander's click: a new public thread in the same channel, seeded with their part of the ended one."""

    def __init__(self, client: discord.Client, members: MemberActions) -> None:
        self.client = client
        self.members = members

    async def clicked(self, click: discord.Interaction, thread: str) -> None:
        try:
            await self._clicked(click, thread)
        except ThreadguardError as exc:
            log.info("own conversation: %s", type(exc).__name__)
            await answer_privately(click, exc.user_message, what="an own-conversation error")
        except discord.HTTPException as exc:
            log.warning("own conversation: Discord refused a call (HTTP %s)", exc.status)
            await answer_privately(click, FAILED, what="an own-conversation error")

    async def _clicked(self, click: discord.Interaction, thread: str) -> None:
        channel = click.channel
        if click.guild_id is None or not isinstance(channel, discord.Thread) or channel.parent_id is None \
                or str(channel.id) != thread:
            await answer_privately(click, LOST, what="a lost conversation")
            return
        old = thread_ref(click.guild_id, channel.parent_id, channel.id)
        await click.response.defer(ephemeral=True, thinking=True)
        opened: list[ThreadRef] = []

        async def open_branch(_first_text: str) -> ThreadRef:
            opened.append(await self._open(old, click.user))
            return opened[-1]

        outcome = await self.members.continue_as_own(old, author_of(click.user), open_branch)
        if outcome.branch is not None and opened:
            text = f"Your conversation continues in a new thread of your own: {ref_url(opened[0])}"
        else:
            text = "\n".join(r.text for r in outcome.replies if r.ephemeral) or "Nothing changed."
        await click.followup.send(text, ephemeral=True)

    async def _open(self, old: ThreadRef, member: discord.abc.User) -> ThreadRef:
        data = await self.client.http.start_thread_without_message(
            int(old.channel), name=f"{member.display_name[:60]}'s conversation", auto_archive_duration=1440,
            type=discord.ChannelType.public_thread.value, invitable=True,
            reason="threadguard: a member continues their part of an ended conversation")
        thread_id = int(data["id"])
        try:
            await self.client.http.add_user_to_thread(thread_id, member.id)
        except discord.HTTPException as exc:
            log.debug("could not add the member to thread %s (%s)", thread_id, exc.status)
        branch = self.client.get_partial_messageable(thread_id, guild_id=int(old.community))
        await branch.send(f"{member.mention} continues their part of {ref_url(old)} here, without the requests "
                          "that ended it. This is a new conversation: write here to go on.",
                          allowed_mentions=discord.AllowedMentions(users=[discord.Object(member.id)]))
        return thread_ref(int(old.community), int(old.channel), thread_id)
