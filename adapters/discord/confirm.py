"""The ``/end`` confirmation buttons. Everything a click needs is in the button's ``custom_id`` (the
conversation, the member who asked, when they asked), so the buttons keep working after a restart."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import discord

Choice = Literal["yes", "no"]

#: ``tg:end:<yes|no>:<conversation>:<member id>:<asked at, epoch seconds>``. The conversation is the
#: thread id, or a direct-message conversation (``<channel id>`` or ``<channel id>~<n>``).
TEMPLATE = r"tg:end:(?P<choice>yes|no):(?P<thread>\d+(?:~\d+)?):(?P<user>\d+):(?P<asked>\d+)"
_PATTERN = re.compile(TEMPLATE)


@dataclass(frozen=True)
class EndRequest:
    """One member's request to end one conversation, as carried by a confirmation button."""

    choice: Choice
    thread: str
    user_id: int
    asked_at: int

    @property
    def custom_id(self) -> str:
        return f"tg:end:{self.choice}:{self.thread}:{self.user_id}:{self.asked_at}"

    @classmethod
    def parse(cls, custom_id: str) -> EndRequest | None:
        match = _PATTERN.fullmatch(custom_id)
        return cls.from_match(match) if match else None

    @classmethod
    def from_match(cls, match: re.Match[str]) -> EndRequest:
        choice: Choice = "yes" if match["choice"] == "yes" else "no"
        return cls(choice, match["thread"], int(match["user"]), int(match["asked"]))

    def expired(self, timeout: float, now: float | None = None) -> bool:
        return (time.time() if now is None else now) - self.asked_at > timeout


ChoiceHandler = Callable[[discord.Interaction, EndRequest], Awaitable[None]]


def end_button_type(handle: ChoiceHandler) -> type[discord.ui.DynamicItem[discord.ui.Button[Any]]]:
    """A button class bound to ``handle``; register it with ``client.add_dynamic_items`` at start-up."""

    class EndButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
        def __init__(self, request: EndRequest) -> None:
            yes = request.choice == "yes"
            super().__init__(discord.ui.Button(
                label="End this conversation" if yes else "Keep talking",
                style=discord.ButtonStyle.danger if yes else discord.ButtonStyle.secondary,
                custom_id=request.custom_id))
            self.request = request

        @classmethod
        async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                                 match: re.Match[str], /) -> EndButton:
            return cls(EndRequest.from_match(match))

        async def callback(self, interaction: discord.Interaction) -> None:
            await handle(interaction, self.request)

    return EndButton


def confirm_view(button_type: type[discord.ui.DynamicItem[discord.ui.Button[Any]]], thread: str,
                 user_id: int, now: float | None = None) -> discord.ui.View:
    """The two buttons for one request. ``timeout=None``: the view is never unregistered in memory;
    the expiry is checked from the ``custom_id`` when a button is clicked."""
    asked = int(time.time() if now is None else now)
    view = discord.ui.View(timeout=None)
    choices: tuple[Choice, Choice] = ("yes", "no")
    for choice in choices:
        view.add_item(button_type(EndRequest(choice, thread, user_id, asked)))  # type: ignore[arg-type]
    return view
