"""The "Edit and branch" message command: members cannot edit messages in a locked, archived thread,
so they pick one of their earlier messages, edit its text in a form, and the engine branches from
there exactly as it does for a real edit."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands

from bot.errors import ThreadguardError
from bot.types import Outcome, ReplyKind, ThreadStatus

from .conversations import Conversations, Place
from .openings import opening_ref
from .replies import answer_privately
from .translate import DM_COMMUNITY, ref_url, strip_bot_mention

log = logging.getLogger(__name__)

COMMAND_NAME = "Edit and branch"
TEXT_LIMIT = 2000
STILL_GOING = "This conversation is still going; just send a new message."
NOT_YOURS = "You can only branch from one of your own messages."
NOT_HERE = ("Use this on one of your messages in a conversation with me: a thread I answer in, or our "
            "direct messages.")
FAILED = "Something went wrong on my side. Please try again in a moment."

Submit = Callable[[discord.Interaction, str], Awaitable[None]]


class BranchModal(discord.ui.Modal):
    """The member's earlier message, ready to edit (at most 2,000 characters)."""

    def __init__(self, text: str, message_id: int, on_submit: Submit) -> None:
        super().__init__(title=COMMAND_NAME, timeout=900, custom_id=f"tg:branch:{message_id}")
        self.text: discord.ui.TextInput[BranchModal] = discord.ui.TextInput(
            style=discord.TextStyle.paragraph, default=text[:TEXT_LIMIT] or None, max_length=TEXT_LIMIT,
            required=True, custom_id="text")
        self.add_item(discord.ui.Label(text="Your message", component=self.text,
                                       description="The conversation continues from here, in a new thread."))
        self._submit = on_submit

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        await self._submit(interaction, self.text.value)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        if isinstance(error, ThreadguardError):
            text = error.user_message
            log.info("branch form: %s", type(error).__name__)
        else:
            text = FAILED
            log.error("branch form failed", exc_info=error)
        await answer_privately(interaction, text, what="a branch error")


def branch_answer(outcome: Outcome, branch: Place | None) -> str:
    """What the member sees (only them) after submitting the form."""
    if outcome.duplicate:
        return "That edit was already handled."
    if branch is not None:
        if branch.ref.community == DM_COMMUNITY:
            return "Your conversation continues below, as a new conversation."
        return f"Your conversation continues in a new thread: {ref_url(branch.ref)}"
    said = [r.text for r in outcome.replies if r.kind in (ReplyKind.INFO, ReplyKind.ERROR)]
    if said:
        return "\n".join(said)
    return STILL_GOING


class Branching:
    """Registers the message command and carries it out through ``Conversations.branch``."""

    def __init__(self, conversations: Conversations) -> None:
        self.conversations = conversations

    def command(self) -> app_commands.ContextMenu:
        return app_commands.ContextMenu(name=COMMAND_NAME, callback=self.start)

    async def start(self, interaction: discord.Interaction, message: discord.Message) -> None:
        conv = self.conversations
        place = await conv.place_of(interaction, message_id=str(message.id)) or self.opening_place(interaction, message)
        if place is None:
            await interaction.response.send_message(NOT_HERE, ephemeral=True)
            return
        if message.author.id != interaction.user.id:
            await interaction.response.send_message(NOT_YOURS, ephemeral=True)
            return
        state = await conv.members.thread_state(place.ref)
        if state.status is ThreadStatus.ACTIVE:
            await interaction.response.send_message(STILL_GOING, ephemeral=True)
            return
        me = interaction.client.user
        text = strip_bot_mention(message.content, me.id) if me is not None else message.content

        async def submitted(done: discord.Interaction, new_text: str) -> None:
            await self.submit(done, place, message.id, new_text)

        await interaction.response.send_modal(BranchModal(text, message.id, submitted))

    def opening_place(self, interaction: discord.Interaction, message: discord.Message) -> Place | None:
        """The conversation ``message`` opened, when it is the mention in a channel that opened a thread."""
        me = interaction.client.user
        ref = opening_ref(message, interaction.channel, me.id) if me is not None else None
        if ref is None or not self.conversations.allowed_in_guild(int(ref.community), int(ref.channel)):
            return None
        return Place(ref, self.conversations.channel_for(ref))

    async def submit(self, interaction: discord.Interaction, place: Place, message_id: int, text: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome, branch = await self.conversations.branch(place, interaction.user, str(message_id), text,
                                                          event_id=f"branch-form:{interaction.id}")
        log.info("thread %s: branch form %s", place.ref.key,
                 f"opened {branch.ref.key}" if branch else "changed nothing")
        await interaction.followup.send(branch_answer(outcome, branch), ephemeral=True)
