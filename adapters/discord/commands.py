"""Slash commands: ``/chat``, ``/end`` (with a confirmation) and the moderators' ``/threadguard``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import discord
from discord import app_commands

from adapters.text import split_text
from bot.caselog import CaseLog
from bot.errors import NotAllowed, ThreadguardError
from bot.moderation import Moderation
from bot.types import CATEGORY_LABELS, Case, IncomingMessage, Outcome, ReplyKind, ThreadRef
from bot.validation import EMPTY_MESSAGE, looks_empty

from .branching import Branching
from .confirm import EndRequest, confirm_view, end_button_type
from .conversations import Conversations, Place
from .modlog import case_embed, transcript_file
from .replies import MESSAGE_LIMIT, answer_privately
from .translate import DM_COMMUNITY, author_of, dm_ref, ref_url, thread_name, thread_ref

log = logging.getLogger(__name__)

EPHEMERAL_KINDS = (ReplyKind.INFO, ReplyKind.ERROR, ReplyKind.CONFIRM)
MOD_REFUSAL = (f"{NotAllowed.user_message} Moderator commands need the Manage Messages permission or "
               "this server's moderator role.")
CASES_PER_PAGE = 10
_NO_PINGS = discord.AllowedMentions.none()


def is_moderator(interaction: discord.Interaction, conversations: Conversations) -> bool:
    """Manage Messages (as Discord computed it for this channel), the moderator role, or a listed id."""
    if interaction.guild_id is None or not isinstance(interaction.user, discord.Member):
        return False
    config = conversations.communities.get(str(interaction.guild_id))
    if interaction.permissions.manage_messages:
        return True
    roles = {str(role_id) for role_id in interaction.user._roles}
    return (config.moderator_role is not None and config.moderator_role in roles) or \
        str(interaction.user.id) in config.moderators


def _case_line(case: Case) -> str:
    label = CATEGORY_LABELS.get(case.category or "", case.category or "-")
    ref = f" of #{case.refers_to}" if case.refers_to is not None else ""
    try:
        link = f" · [thread]({case.jump_url or ref_url(ThreadRef.from_key(case.thread))})"
    except ValueError:
        link = ""
    return f"**#{case.case_id}** {case.action}{ref} · {case.reason or '-'} · {label} · {case.ended_at}{link}"


class Commands:
    """Registers the commands on a tree and carries them out through the member actions and the moderators'
    use cases."""

    def __init__(self, tree: app_commands.CommandTree[discord.Client], conversations: Conversations,
                 moderation: Moderation, cases: CaseLog, confirm_timeout: float = 120.0) -> None:
        self.tree = tree
        self.conversations = conversations
        self.moderation = moderation
        self.cases = cases
        self.confirm_timeout = confirm_timeout
        tree.on_error = self.on_error  # type: ignore[method-assign]
        tree.add_command(self._command("chat", "Start a conversation with the bot", Commands.chat))
        tree.add_command(self._command("end", "End your conversation in this thread", Commands.end))
        tree.add_command(Branching(conversations).command())
        tree.add_command(self._moderator_group())
        self.end_button = end_button_type(self.end_choice)
        tree.client.add_dynamic_items(self.end_button)  # clicks are routed by custom_id, even after a restart

    def _command(self, name: str, description: str, func: Callable[..., Any],
                 parent: app_commands.Group | None = None) -> app_commands.Command[Any, ..., None]:
        """A command whose callback is a method of this object (``binding`` supplies ``self``)."""
        command: app_commands.Command[Any, ..., None] = app_commands.Command(
            name=name, description=description, callback=func, parent=parent)
        command.binding = self
        return command

    # --- members -------------------------------------------------------------------------------

    @app_commands.describe(message="What you want to say")
    async def chat(self, interaction: discord.Interaction, message: app_commands.Range[str, 1, 4000]) -> None:
        """In a channel: open a thread. In a thread: continue it. In a DM: start a new conversation."""
        conv = self.conversations
        author = author_of(interaction.user)
        channel = interaction.channel
        if looks_empty(message):  # only invisible characters: nothing to open a conversation with
            await interaction.response.send_message(EMPTY_MESSAGE, ephemeral=True)
            return
        if interaction.guild_id is None and channel is not None:
            place = await conv.dm_place(channel, fresh=True)  # type: ignore[arg-type]
            if place is None:
                await interaction.response.send_message("I don't answer direct messages here.", ephemeral=True)
                return
        elif isinstance(channel, discord.Thread | discord.TextChannel):
            parent = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
            if interaction.guild_id is None or parent is None or not conv.allowed_in_guild(interaction.guild_id,
                                                                                          parent):
                await interaction.response.send_message("I'm not enabled in this channel.", ephemeral=True)
                return
            place = await conv.place_of(interaction)
        else:
            await interaction.response.send_message("I can only chat in text channels, threads and direct "
                                                    "messages.", ephemeral=True)
            return
        opening = f"**{author.name}:** {message}"
        if place is not None and place.ref.community == DM_COMMUNITY:
            opening = f"*New conversation*\n{opening}"
        first, *rest = split_text(opening, MESSAGE_LIMIT)  # up to 4,000 characters: two messages
        await interaction.response.send_message(first, allowed_mentions=_NO_PINGS)
        if place is None:
            response = await interaction.original_response()
            thread = await response.create_thread(name=thread_name(message), auto_archive_duration=1440)
            place = Place(thread_ref(thread.guild.id, thread.parent_id, thread.id), thread)
        for piece in rest:
            await place.channel.send(piece, allowed_mentions=_NO_PINGS)
        incoming = IncomingMessage(place.ref, author, message, message_id=str(interaction.id),
                                   jump_url=ref_url(place.ref) if interaction.guild_id else None)
        await conv.converse(place, incoming)

    async def end(self, interaction: discord.Interaction) -> None:
        place = await self.conversations.place_of(interaction)
        if place is None:
            await interaction.response.send_message("Use /end inside the conversation thread you want to end.",
                                                    ephemeral=True)
            return
        refused = await self.conversations.members.end_refusal(
            place.ref, author_of(interaction.user), moderator=is_moderator(interaction, self.conversations))
        if refused is not None:  # not theirs to end (a shared thread): said privately, nothing to confirm
            await interaction.response.send_message(refused, ephemeral=True)
            return
        view = confirm_view(self.end_button, place.ref.thread, interaction.user.id)
        await interaction.response.send_message(
            "Ending is permanent: I won't answer in this thread again (a moderator can reopen it). You can "
            "start a new conversation any time. End it?", view=view, ephemeral=True)

    async def end_choice(self, click: discord.Interaction, request: EndRequest) -> None:
        """A click on an ``/end`` button, possibly long after the prompt or by another process."""
        try:
            await self._end_choice(click, request)
        except ThreadguardError as exc:
            log.info("end confirmation: %s", type(exc).__name__)
            await self._tell(click, exc.user_message)

    async def _tell(self, interaction: discord.Interaction, text: str) -> None:
        try:
            if interaction.response.is_done():
                await interaction.edit_original_response(content=text, view=None)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            log.warning("could not report an error to the member")

    async def _end_choice(self, click: discord.Interaction, request: EndRequest) -> None:
        if click.user.id != request.user_id:
            await click.response.send_message("Only the member who asked to end this conversation can confirm.",
                                              ephemeral=True)
            return
        if request.choice == "no":
            await click.response.edit_message(content="Okay, the conversation stays open.", view=None)
            return
        if request.expired(self.confirm_timeout):
            await click.response.edit_message(content="This confirmation has expired. Use /end again if you "
                                                      "still want to end the conversation.", view=None)
            return
        place = await self._asked_place(click, request)
        if place is None:
            await click.response.edit_message(content="I can't find that conversation any more.", view=None)
            return
        await click.response.edit_message(content="Ending the conversation…", view=None)
        outcome = await self.conversations.members.end_by_user(place.ref, author_of(click.user), ref_url(place.ref),
                                                               moderator=is_moderator(click, self.conversations))
        private = [r.text for r in outcome.replies if r.ephemeral and r.kind in EPHEMERAL_KINDS]
        await click.edit_original_response(content="\n".join(private) or "The conversation has ended.")
        outcome.replies = [r for r in outcome.replies if r.text not in private]
        await self.conversations.deliver(outcome)

    async def _asked_place(self, click: discord.Interaction, request: EndRequest) -> Place | None:
        """The conversation the button was made for (a DM may have moved on to a newer one since)."""
        channel = click.channel
        if click.guild_id is None and channel is not None:
            if request.thread.split("~")[0] != str(channel.id):
                return None
            return Place(replace(dm_ref(channel.id), thread=request.thread), channel)  # type: ignore[arg-type]
        place = await self.conversations.place_of(click)
        return place if place is not None and place.ref.thread == request.thread else None

    # --- moderators ----------------------------------------------------------------------------

    def _moderator_group(self) -> app_commands.Group:
        group = app_commands.Group(name="threadguard", description="Moderator tools for ended conversations",
                                   guild_only=True,
                                   default_permissions=discord.Permissions(manage_messages=True))
        group.add_command(self._command("cases", "Recent cases in this server", Commands.cases, group))
        group.add_command(self._command("case", "One case with its transcript", Commands.case, group))
        group.add_command(self._command("reopen", "Reopen the thread of a case", Commands.reopen, group))
        return group

    async def _refuse_non_moderator(self, interaction: discord.Interaction) -> bool:
        if is_moderator(interaction, self.conversations):
            return False
        log.info("moderator command refused for user %s in guild %s", interaction.user.id, interaction.guild_id)
        await interaction.response.send_message(MOD_REFUSAL, ephemeral=True)
        return True

    @app_commands.describe(page="Page number (10 cases per page)")
    async def cases(self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 1000] = 1) -> None:
        if await self._refuse_non_moderator(interaction):
            return
        found = await self.cases.list(str(interaction.guild_id), offset=(page - 1) * CASES_PER_PAGE,
                                             limit=CASES_PER_PAGE)
        text = "\n".join(_case_line(c) for c in found) if found else "No cases on this page."
        await interaction.response.send_message(text[:2000], ephemeral=True, allowed_mentions=_NO_PINGS)

    @app_commands.describe(number="Case number")
    async def case(self, interaction: discord.Interaction, number: app_commands.Range[int, 1]) -> None:
        if await self._refuse_non_moderator(interaction):
            return
        found = await self.cases.get(str(interaction.guild_id), number)
        await interaction.response.send_message(embed=case_embed(found), file=transcript_file(found),
                                                ephemeral=True, allowed_mentions=_NO_PINGS)

    @app_commands.describe(number="Case number of the ended thread")
    async def reopen(self, interaction: discord.Interaction, number: app_commands.Range[int, 1]) -> None:
        if await self._refuse_non_moderator(interaction):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome: Outcome = await self.moderation.reopen(str(interaction.guild_id), number,
                                                        author_of(interaction.user))
        if outcome.action is None:
            await interaction.followup.send("\n".join(r.text for r in outcome.replies) or "Nothing changed.",
                                            ephemeral=True)
            return
        conv = self.conversations
        await conv.reopened(outcome.thread, outcome.replies)
        await conv.surface.log_case(outcome.action)
        await interaction.followup.send(f"Reopened case #{number}: {ref_url(outcome.thread)}", ephemeral=True)

    # --- errors --------------------------------------------------------------------------------

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        cause = getattr(error, "original", error)
        if isinstance(cause, ThreadguardError):
            text = cause.user_message
            log.info("command %s: %s", interaction.command.name if interaction.command else "?",
                     type(cause).__name__)
        else:
            text = "Something went wrong on my side. Please try again in a moment."
            log.error("command %s failed", interaction.command.name if interaction.command else "?",
                      exc_info=cause)
        await answer_privately(interaction, text, what="a command error")
