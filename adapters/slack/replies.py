"""Posting to Slack: clean splits of long text, ephemeral notices, and answers streamed by ``chat.update``.

Every Web API failure (after the client's own retries on 429, 5xx and connection errors) is logged
with the thread key and the Slack error code, and reported as ``False``/``None``: a failed post never
stops the rest of an outcome (the freeze, the mod-log post) from being carried out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.text import split_text

from .translate import escape

log = logging.getLogger(__name__)

#: What a Web API call can raise once the client's retry handlers gave up.
API_ERRORS: tuple[type[BaseException], ...] = (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError)


#: ``chat.update`` errors that mean the message is not there to update any more (a moderator deleted it,
#: or it can no longer be edited): the streamed part is posted anew instead.
GONE_ERRORS = frozenset({"message_not_found", "cant_update_message"})


class MessageGone(Exception):
    """``chat.update`` found no message of the bot's to update."""


def error_code(exc: BaseException) -> str:
    """Slack's short error code (``channel_not_found``, ``ratelimited``…) or the exception type."""
    if isinstance(exc, SlackApiError):
        data = getattr(exc.response, "data", None)
        if isinstance(data, dict) and data.get("error"):
            return str(data["error"])
        return f"http_{getattr(exc.response, 'status_code', '?')}"
    return type(exc).__name__


class Poster:
    """Thin wrapper over the Web API calls the adapter makes; ``where`` (a thread key) goes in the logs."""

    def __init__(self, client: AsyncWebClient, *, limit: int = 3500) -> None:
        self.client = client
        self.limit = limit

    async def post(self, channel: str, thread_ts: str | None, text: str, *, where: str,
                   blocks: list[dict[str, Any]] | None = None, raw: bool = False) -> str | None:
        """Post ``text`` (split when long); returns the ts of the first message, or ``None``."""
        pieces = [text[: self.limit]] if blocks else split_text(text, self.limit)
        if not raw:
            pieces = [escape(p) for p in pieces]
        first: str | None = None
        for piece in pieces:
            try:
                resp = await self.client.chat_postMessage(
                    channel=channel, thread_ts=thread_ts, text=piece, blocks=blocks,
                    unfurl_links=False, unfurl_media=False)
            except API_ERRORS as exc:
                log.warning("%s: chat.postMessage failed (%s)", where, error_code(exc))
                return first
            first = first or str(resp.get("ts") or "") or None
        return first

    async def ephemeral(self, channel: str, user: str, thread_ts: str | None, text: str, *, where: str) -> bool:
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts,
                                                 text=escape(text)[: self.limit])
        except API_ERRORS as exc:
            log.warning("%s: chat.postEphemeral failed (%s)", where, error_code(exc))
            return False
        return True

    async def update(self, channel: str, ts: str, text: str, *, where: str) -> bool:
        """``False`` when the update failed; raises ``MessageGone`` when the message is not there."""
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text)
        except API_ERRORS as exc:
            code = error_code(exc)
            if code in GONE_ERRORS:
                raise MessageGone(code) from exc
            log.warning("%s: chat.update failed (%s)", where, code)
            return False
        return True

    async def delete(self, channel: str, ts: str, *, where: str) -> bool:
        try:
            await self.client.chat_delete(channel=channel, ts=ts)
        except API_ERRORS as exc:
            log.warning("%s: chat.delete failed (%s)", where, error_code(exc))
            return False
        return True


class StreamingReply:
    """A ``TextSink``: the answer grows in one message, updated at most once per ``interval``; past
    the message limit that part is finished and the answer continues in a new message."""

    def __init__(self, poster: Poster, channel: str, thread_ts: str, *, where: str, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._poster = poster
        self._channel = channel
        self._thread_ts = thread_ts
        self._where = where
        self._interval = interval
        self._clock = clock
        self._text = ""
        self._done = 0  # characters of _text already finished in earlier messages
        self._live: str | None = None  # ts of the message being updated
        self._live_text = ""
        self._last = 0.0
        self._broken = False
        self.messages: list[str] = []
        self.updates = 0

    @property
    def started(self) -> bool:
        return bool(self.messages)

    def move(self, thread_ts: str, *, where: str) -> None:
        """Stream into another thread (a branch opened before its first answer)."""
        self._thread_ts, self._where = thread_ts, where

    async def __call__(self, delta: str) -> None:
        self._text += delta
        if self._broken or not self._text[self._done:].strip():
            return
        if self._live is None or self._clock() - self._last >= self._interval:
            await self._flush()

    async def finish(self) -> None:
        """Show whatever the last update did not show yet (trying once more if a post failed)."""
        self._broken = False
        if self._text[self._done:].strip():
            await self._flush()

    async def replace(self, text: str) -> None:
        """The engine settled on other words (an API refusal): show ``text`` in place of the stream."""
        extra, self.messages = self.messages[1:], self.messages[:1]
        for ts in extra:
            await self._poster.delete(self._channel, ts, where=self._where)
        self._live = self.messages[0] if self.messages else None
        self._live_text, self._text, self._done, self._broken = "", text, 0, False
        await self._flush()

    async def discard(self) -> None:
        """Nothing of the stream stands (the turn failed): remove what was posted."""
        for ts in self.messages:
            await self._poster.delete(self._channel, ts, where=self._where)
        self.messages, self._live, self._broken = [], None, True

    async def _flush(self) -> None:
        pending = split_text(self._text[self._done:], self._poster.limit)
        if not pending:
            return
        for piece in pending[:-1]:
            if not await self._show(piece):
                return
            self._done = self._text.find(piece, self._done) + len(piece)
            self._live, self._live_text = None, ""
        await self._show(pending[-1])
        self._last = self._clock()

    async def _show(self, piece: str) -> bool:
        if self._live is None:
            ts = await self._poster.post(self._channel, self._thread_ts, piece, where=self._where)
            if ts is None:
                self._broken = True  # the engine's outcome still goes out; the stream stops trying
                return False
            self._live = ts
            self.messages.append(ts)
        elif piece != self._live_text:
            self.updates += 1
            try:
                if not await self._poster.update(self._channel, self._live, escape(piece), where=self._where):
                    return False
            except MessageGone as gone:
                log.info("%s: streamed message not there to update (%s): posting it anew", self._where, gone)
                self.messages.pop()  # the live message is always the last one
                self._live = None
                return await self._show(piece)
        self._live_text = piece
        return True
