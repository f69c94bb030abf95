"""Posting replies: clean splits past Discord's 2,000 characters, streaming by paced edits, typing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

import discord

from adapters.text import split_text
from bot.pipeline import may_write

from .pacing import EditPacer

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000
_NO_PINGS = discord.AllowedMentions.none()


async def send_text(channel: discord.abc.Messageable, text: str) -> list[discord.Message]:
    """Post ``text`` in as many messages as it needs; mentions in it never ping anyone."""
    return [await channel.send(piece, allowed_mentions=_NO_PINGS) for piece in split_text(text, MESSAGE_LIMIT)]


class StreamingMessage:
    """A ``TextSink`` whose calls never wait on Discord: the text is kept, and this answer's updater task
    shows the latest of it, growing in one message; past 2,000 characters the full part is finished and
    the answer continues in a new message.

    While the answer grows, an edit goes at most once per ``interval`` and only when the channel's
    ``EditPacer`` can spare one right now; a skipped edit costs nothing, the next one shows the text that
    came since. Once the answer is complete (``finish_behind``, ``finish``, ``replace``) every edit left is
    a final: it takes the channel's next edit, ahead of any other answer's growing text.

    One updater per answer rather than one for the process: it runs in the context of the turn that
    started it, so ``may_write()`` answers for that turn's lease, and it keeps the answer's own order (a
    part's last edit, then the next part's post) in one place. The pacer it shares with every answer of
    the process is a ledger with no task of its own."""

    def __init__(self, channel: discord.abc.Messageable, *, interval: float = 1.2,
                 pacer: EditPacer | None = None, where: str = "") -> None:
        self._channel = channel
        self._key: int = getattr(channel, "id", 0)
        self._interval = interval
        self._pacer = pacer or EditPacer()
        self._where = where or str(self._key)
        self._text = ""
        self._done = 0  # characters finished in earlier messages
        self._live: discord.Message | None = None
        self._live_text = ""
        self._last = float("-inf")  # when this answer last showed something (the loop's clock)
        self._broken = False  # a write failed: no more tries until the answer is complete
        self._complete = False  # no more text comes: every edit left is a final
        self._halted = False
        self._wake = asyncio.Event()
        #: Set once every message of the complete answer is posted (only edits may follow).
        self._stands = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.messages: list[discord.Message] = []

    @property
    def started(self) -> bool:
        """Something of the answer is shown, or its first post is on its way."""
        return bool(self.messages) or (self._running and not self._broken and bool(self._pending.strip()))

    async def __call__(self, delta: str) -> None:
        self._text += delta
        if not self._broken and self._pending.strip():
            self._kick()

    async def working(self) -> None:
        """The model is slow to say anything: Discord's typing indicator (it lasts about ten seconds)."""
        if self.started or not may_write():
            return
        with contextlib.suppress(discord.HTTPException):
            await self._channel.typing()

    def close(self) -> None:
        """No more text comes: the updater shows what is left, then ends."""
        self._complete = True
        if not self._broken and self._pending.strip():
            self._kick()
        self._wake.set()

    async def finish_behind(self) -> None:
        """Like ``finish``, but return once every message of the answer is posted, so posts that follow come
        after it; the last edit of its last message may still be on its way (``shown``)."""
        self._close_again()
        if self._running:
            await asyncio.shield(self._stands.wait())

    async def finish(self) -> None:
        """Show whatever is not shown yet (trying once more if a write failed) and wait until it is."""
        self._close_again()
        await self.shown()

    async def replace(self, text: str) -> None:
        """The engine decided the answer differently (an API refusal, an error): show ``text`` instead."""
        await self.stop()
        extra, self.messages = self.messages[1:], self.messages[:1]
        for message in extra:
            with contextlib.suppress(discord.HTTPException):
                await message.delete()
        self._live = self.messages[0] if self.messages else None
        self._live_text, self._text, self._done, self._halted = "", text, 0, False
        await self.finish()

    async def stop(self) -> None:
        """Nothing more is shown: the updater ends after the write it is making."""
        self._halted = True
        self._wake.set()
        await self.shown()

    async def shown(self) -> None:
        """Wait until the updater has ended (everything shown, stopped, or given up)."""
        if self._task is not None:
            await asyncio.wait([self._task])

    # --- the updater ----------------------------------------------------------------------------

    def _close_again(self) -> None:
        """Close, trying once more if a write failed (and posting anew what that needs)."""
        self._broken = False
        self._stands.clear()
        self.close()

    @property
    def _pending(self) -> str:
        return self._text[self._done:]

    @property
    def _running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def _behind(self) -> bool:
        pending = self._pending
        if not pending.strip():
            return False
        return self._live is None or split_text(pending, MESSAGE_LIMIT) != [self._live_text]

    def _kick(self) -> None:
        self._wake.set()
        if not self._halted and not self._running:
            self._task = asyncio.create_task(self._run(), name=f"discord stream {self._where}")

    async def _run(self) -> None:
        try:
            while not self._halted:
                self._wake.clear()
                if not self._broken and self._behind and await self._step():
                    continue
                if self._complete and (self._broken or not self._behind):
                    return
                await self._wake.wait()  # the next text, the end of the answer, or a stop
        except Exception as exc:  # a connection failure: the engine's outcome still goes out
            log.warning("thread %s: streamed answer stopped (%s)", self._where, type(exc).__name__)
            self._broken = True
        finally:
            self._stands.set()

    async def _step(self) -> bool:
        """Show the latest text; False when an intermediate edit was skipped or a write failed."""
        pieces = split_text(self._pending, MESSAGE_LIMIT)
        for piece in pieces[:-1]:  # a part that filled up: its last edit (a final's), then the next part
            if not await self._show(piece, final=True):
                return False
            self._done = self._text.find(piece, self._done) + len(piece)
            self._live, self._live_text = None, ""
        if self._complete and self._live is not None:
            self._stands.set()  # only the last message's edit is left: what follows may be posted
        return await self._show(pieces[-1], final=self._complete)

    async def _show(self, piece: str, *, final: bool) -> bool:
        if self._live is None:
            return await self._post(piece)
        if piece == self._live_text:
            return True
        if final:
            await self._pacer.wait_edit(self._key)
        elif self._now() - self._last < self._interval or not self._pacer.try_edit(self._key):
            return False
        try:
            return await self._edit(self._live, piece)
        finally:
            self._pacer.edited(self._key)

    async def _edit(self, live: discord.Message, piece: str) -> bool:
        if self._withheld():
            return False
        try:
            self._live = await live.edit(content=piece, allowed_mentions=_NO_PINGS)
        except (discord.NotFound, discord.Forbidden) as exc:
            # A moderator deleted the message (10008), or it can no longer be edited: the part it held is
            # posted anew, in full, and the answer goes on from there.
            log.info("thread %s: streamed message refused an edit (HTTP %s, code %s): posting it anew",
                     self._where, exc.status, exc.code)
            self.messages.pop()
            self._live = None
            return await self._post(piece)
        except discord.HTTPException as exc:
            return self._failed(exc)
        self.messages[-1] = self._live
        self._live_text, self._last = piece, self._now()
        return True

    async def _post(self, piece: str) -> bool:
        if self._withheld():
            return False
        try:
            self._live = await self._channel.send(piece, allowed_mentions=_NO_PINGS)
        except discord.HTTPException as exc:
            return self._failed(exc)
        self.messages.append(self._live)
        self._live_text, self._last = piece, self._now()
        return True

    def _withheld(self) -> bool:
        if may_write():
            return False
        log.info("thread %s: streamed answer withheld: this process no longer holds the thread", self._where)
        self._broken = True
        return True

    def _failed(self, exc: discord.HTTPException) -> bool:
        log.warning("thread %s: streamed answer not shown (HTTP %s, code %s)%s", self._where, exc.status,
                    exc.code, "" if self._complete else "; trying again at the end")
        self._broken = True
        return False

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


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
