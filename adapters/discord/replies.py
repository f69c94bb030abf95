"""Posting replies: clean splits past Discord's 2,000 characters, streaming by edits, typing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from types import TracebackType

import discord

from adapters.text import split_text
from bot.pipeline import may_write

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000
_NO_PINGS = discord.AllowedMentions.none()


async def send_text(channel: discord.abc.Messageable, text: str) -> list[discord.Message]:
    """Post ``text`` in as many messages as it needs; mentions in it never ping anyone."""
    return [await channel.send(piece, allowed_mentions=_NO_PINGS) for piece in split_text(text, MESSAGE_LIMIT)]


class StreamingMessage:
    """A ``TextSink``: the answer grows in one message, edited at most once per ``interval``;
    past 2,000 characters the full part is finished and the answer continues in a new message."""

    def __init__(self, channel: discord.abc.Messageable, *, interval: float = 1.2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._channel = channel
        self._interval = interval
        self._clock = clock
        self._text = ""
        self._done_chars = 0  # characters already finished in earlier messages
        self._live: discord.Message | None = None
        self._live_text = ""
        self._last_flush = 0.0
        self._broken = False  # a post failed: stop trying until ``finish``
        self.messages: list[discord.Message] = []

    @property
    def started(self) -> bool:
        return bool(self.messages)

    async def __call__(self, delta: str) -> None:
        self._text += delta
        if self._broken or not self._text[self._done_chars:].strip():
            return
        if self._live is None or self._clock() - self._last_flush >= self._interval:
            try:
                await self._flush()
            except discord.HTTPException as exc:  # the turn goes on; ``finish`` tries once more
                log.warning("streamed answer not shown (HTTP %s, code %s); trying again at the end",
                            exc.status, exc.code)
                self._broken = True

    async def working(self) -> None:
        """The model is slow to say anything: Discord's typing indicator (it lasts about ten seconds)."""
        if self.messages or not may_write():
            return
        with contextlib.suppress(discord.HTTPException):
            await self._channel.typing()

    async def finish(self) -> None:
        """Write out whatever the last edit did not show yet (trying once more if a post failed)."""
        self._broken = False
        if self._text[self._done_chars:].strip():
            await self._flush()

    async def replace(self, text: str) -> None:
        """The engine decided the answer differently (an API refusal, an error): show ``text`` instead."""
        extra, self.messages = self.messages[1:], self.messages[:1]
        for message in extra:
            with contextlib.suppress(discord.HTTPException):
                await message.delete()
        self._live = self.messages[0] if self.messages else None
        self._live_text = ""
        self._text, self._done_chars = text, 0
        await self._flush()

    async def _flush(self) -> None:
        pending = split_text(self._text[self._done_chars:], MESSAGE_LIMIT)
        if not pending:
            return
        for piece in pending[:-1]:
            await self._show(piece)
            self._done_chars = self._text.find(piece, self._done_chars) + len(piece)
            self._live, self._live_text = None, ""
        await self._show(pending[-1])
        self._last_flush = self._clock()

    async def _show(self, piece: str) -> None:
        if not may_write():  # a stale owner resumed: the thread's new owner answers
            log.info("streamed answer withheld: this process no longer holds the thread")
            self._broken = True
            return
        if self._live is not None and piece != self._live_text:
            try:
                self._live = await self._live.edit(content=piece, allowed_mentions=_NO_PINGS)
                self.messages[-1] = self._live
            except (discord.NotFound, discord.Forbidden) as exc:
                # A moderator deleted the message (10008), or it can no longer be edited: the part
                # it held is posted anew, in full, and the answer goes on from there.
                log.info("streamed message refused an edit (HTTP %s, code %s): posting it anew",
                         exc.status, exc.code)
                self.messages.pop()
                self._live = None
        if self._live is None:
            self._live = await self._channel.send(piece, allowed_mentions=_NO_PINGS)
            self.messages.append(self._live)
        self._live_text = piece


class TypingIndicator:
    """Shows "typing…" while the engine works, but only if it takes longer than ``delay`` (a message
    to a frozen thread is answered at once and should not flash the indicator). Failures are ignored."""

    REFRESH = 8.0

    def __init__(self, channel: discord.abc.Messageable, delay: float = 0.3) -> None:
        self._channel = channel
        self._delay = delay
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        await asyncio.sleep(self._delay)
        while True:
            try:
                await self._channel.typing()
            except discord.HTTPException as exc:
                log.debug("typing indicator refused (%s)", exc.status)
                return
            await asyncio.sleep(self.REFRESH)

    async def __aenter__(self) -> TypingIndicator:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def answer_privately(interaction: discord.Interaction, text: str, *, what: str) -> None:
    """Tell the member ``text`` ephemerally, whether or not the interaction was answered already."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not report %s to the member", what)
