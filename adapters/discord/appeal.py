"""Members' appeals on Discord: a button under the freeze notice, a short form, the appeal filed once.

The button's ``custom_id`` carries the community and the case (``tg:appeal:<guild id or dm>:<case>``, far
below Discord's 100 characters), so it works after a restart and on any replica. A click answers at once
(Discord allows 3 seconds): with the form, or with a private line when the member cannot appeal (not a
participant, already appealed). The form's sentence is optional and at most ``APPEAL_MAX_CHARS``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.errors import ThreadguardError
from bot.review import (
    APPEAL_DUPLICATE,
    APPEAL_MAX_CHARS,
    APPEAL_NOT_PARTICIPANT,
    AppealAnswer,
    AppealResult,
    ReviewDesk,
)

from .replies import answer_privately
from .translate import author_of

log = logging.getLogger(__name__)

TEMPLATE = r"tg:appeal:(?P<community>\d{1,20}|dm):(?P<case>\d{1,12})"
LABEL = "This ending was a mistake"
FAILED = "Something went wrong on my side. Please try again in a moment."

Filed = Callable[[AppealAnswer], Awaitable[None]]


class AppealModal(discord.ui.Modal):
    """One optional sentence (``APPEAL_MAX_CHARS`` at most) for the moderators."""

    def __init__(self, community: str, case_id: int, on_submit: Callable[[discord.Interaction, str], Awaitable[None]]
                 ) -> None:
        super().__init__(title="Appeal this ending", timeout=900, custom_id=f"tg:appealform:{community}:{case_id}")
        self.text: discord.ui.TextInput[AppealModal] = discord.ui.TextInput(
            style=discord.TextStyle.paragraph, max_length=APPEAL_MAX_CHARS, required=False, custom_id="text")
        self.add_item(discord.ui.Label(text="Why was it a mistake? (optional)", component=self.text,
                                       description="A moderator reads this and decides."))
        self._submit = on_submit

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        await self._submit(interaction, self.text.value or "")

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        if isinstance(error, ThreadguardError):
            log.info("appeal form: %s", type(error).__name__)
            await answer_privately(interaction, error.user_message, what="an appeal error")
        else:
            log.error("appeal form failed", exc_info=error)
            await answer_privately(interaction, FAILED, what="an appeal error")


def appeal_button_type(review: ReviewDesk, on_filed: Filed) -> type[discord.ui.DynamicItem[discord.ui.Button[Any]]]:
    """The button class; register it with ``client.add_dynamic_items`` at start-up."""

    class AppealButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
        def __init__(self, community: str, case_id: int) -> None:
            super().__init__(discord.ui.Button(label=LABEL, style=discord.ButtonStyle.secondary,
                                               custom_id=f"tg:appeal:{community}:{case_id}"))
            self.community, self.case_id = community, case_id

        @classmethod
        async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                                 match: re.Match[str], /) -> AppealButton:
            return cls(match["community"], int(match["case"]))

        async def callback(self, interaction: discord.Interaction) -> None:
            try:
                await self._clicked(interaction)
            except ThreadguardError as exc:
                log.info("appeal button: %s", type(exc).__name__)
                await answer_privately(interaction, exc.user_message, what="an appeal error")

        async def _clicked(self, interaction: discord.Interaction) -> None:
            member = str(interaction.user.id)
            case = await review.case_for_appeal(self.community, self.case_id)
            if case is None or member not in {p.id for p in case.participants}:
                await interaction.response.send_message(APPEAL_NOT_PARTICIPANT, ephemeral=True)
                return
            if await review.has_appealed(self.community, self.case_id, member):
                await interaction.response.send_message(APPEAL_DUPLICATE, ephemeral=True)
                return

            async def submitted(done: discord.Interaction, text: str) -> None:
                answer = await review.file_appeal(self.community, self.case_id, author_of(done.user), text)
                await done.response.send_message(answer.message, ephemeral=True)
                if answer.result is AppealResult.FILED:
                    await on_filed(answer)

            await interaction.response.send_modal(AppealModal(self.community, self.case_id, submitted))

    return AppealButton


def appeal_view(button_type: type[discord.ui.DynamicItem[discord.ui.Button[Any]]], community: str,
                case_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(button_type(community, case_id))  # type: ignore[call-arg,arg-type]
    return view
