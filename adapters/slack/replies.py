"""Posting to Slack: clean splits of long text, ephemeral notices, and answers streamed by ``chat.update``.

Every Web API failure (after the client's own retries on 429, 5xx and connection errors) is logged
with the thread key and the Slack error code, and reported as ``False``/``None``: a failed post never
stops the rest of an outcome (the freeze, the mod-log post) from being carried out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.text import split_text
from bot.metrics import Metrics
from bot.pipeline import may_write

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

    def __init__(self, client: AsyncWebClient, *, limit: int = 3500, metrics: Metrics | None = None,
                 stream_client: AsyncWebClient | None = None, budget: UpdateBudget | None = None) -> None:
        self.client = client
        self.limit = limit
        self.metrics = metrics or Metrics()
        #: For streamed updates: a client that returns a 429 at once instead of sleeping on it.
        self.stream_client = stream_client or client
        #: The workspace's shared ``chat.update`` budget (None: only the per-reply interval paces updates).
        self.budget = budget

    @staticmethod
    def workspace_of(where: str) -> str:
        """The Slack team of a thread key (the budget is per workspace)."""
        parts = where.split(":", 2)
        return parts[1] if len(parts) > 2 and parts[0] == "slack" else "-"

    @staticmethod
    def withheld(method: str, where: str) -> bool:
        """True (and one log line) when this process no longer holds the lease of the turn it writes for."""
        if may_write():
            return False
        log.info("%s: %s withheld: this process no longer holds the thread", where, method)
        return True

    def failed(self, method: str, exc: BaseException, where: str) -> None:
        code = error_code(exc)
        log.warning("%s: %s failed (%s)", where, method, code)
        self.metrics.platform_error("slack", code)
        if retry_after(exc) is not None:
            self.metrics.rate_limited("slack", method)

    async def post(self, channel: str, thread_ts: str | None, text: str, *, where: str,
                   blocks: list[dict[str, Any]] | None = None, raw: bool = False) -> str | None:
        """Post ``text`` (split when long); returns the ts of the first message, or ``None``."""
        if self.withheld("chat.postMessage", where):
            return None
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
                self.failed("chat.postMessage", exc, where)
                return first
            first = first or str(resp.get("ts") or "") or None
        return first

    async def ephemeral(self, channel: str, user: str, thread_ts: str | None, text: str, *, where: str) -> bool:
        if self.withheld("chat.postEphemeral", where):
            return False
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts,
                                                 text=escape(text)[: self.limit])
        except API_ERRORS as exc:
            self.failed("chat.postEphemeral", exc, where)
            return False
        return True

    async def update_streamed(self, channel: str, ts: str, text: str, *, where: str) -> bool | float:
        """One ``chat.update`` of a streamed answer: True, False (failed), or the seconds a 429 asks for;
        raises ``MessageGone`` when the message is not there any more."""
        if self.withheld("chat.update", where):
            return False
        try:
            await self.stream_client.chat_update(channel=channel, ts=ts, text=text)
        except API_ERRORS as exc:
            if error_code(exc) in GONE_ERRORS:
                raise MessageGone(error_code(exc)) from exc
            wait = retry_after(exc)
            if wait is None:
                self.failed("chat.update", exc, where)
                return False
            self.metrics.rate_limited("slack", "chat.update")
            return wait
        return True

    async def delete(self, channel: str, ts: str, *, where: str) -> bool:
        try:
            await self.client.chat_delete(channel=channel, ts=ts)
        except API_ERRORS as exc:
            self.failed("chat.delete", exc, where)
            return False
        return True


class UpdateBudget(Protocol):
    """A ``chat.update`` budget shared by the processes of a workspace (``bot.store.budget.SharedBudget``)."""

    async def wait_seconds(self, workspace: str) -> float: ...

    async def pause(self, workspace: str, seconds: float) -> None: ...


def retry_after(exc: BaseException) -> float | None:
    """Seconds a 429 asks to wait (1 when it names none), or None when ``exc`` is not a 429."""
    response = getattr(exc, "response", None)
    if not isinstance(exc, SlackApiError) or getattr(response, "status_code", None) != 429:
        return None
    headers = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                break
    return 1.0


#: What a slow answer shows until its first words arrive (then the same message becomes the answer).
WORKING = "_Working on it…_"


class StreamingReply:
    """A ``TextSink`` whose calls never wait on Slack: the text is kept, and one updater task per reply
    shows the latest of it, at most once per ``interval`` and within the workspace's shared
    ``chat.update`` budget. A 429 pauses the updater (and, through the budget, every process of the
    workspace) for its Retry-After; the next update then shows the latest text, so nothing is sent twice.
    Past the message limit that part is finished and the answer continues in a new message."""

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
        self._last = float("-inf")
        self._broken = False
        #: The live message shows ``WORKING``: its first words replace it at once, not paced.
        self._placeholder = False
        self._wake = asyncio.Event()
        self._closing = False
        self._halted = False
        self._task: asyncio.Task[None] | None = None
        #: Set once the answer's first message is posted (or the updater stopped without one).
        self._posted = asyncio.Event()
        self.messages: list[str] = []
        self.updates = 0
        #: Seconds spent waiting for the budget or a Retry-After (for tests and logs).
        self.waited = 0.0

    @property
    def started(self) -> bool:
        return bool(self.messages) or self._pending_first

    @property
    def _pending_first(self) -> bool:
        return self._task is not None and not self._task.done() and not self._halted

    def move(self, thread_ts: str, *, where: str) -> None:
        """Stream into another thread (a branch opened before its first answer)."""
        self._thread_ts, self._where = thread_ts, where

    async def __call__(self, delta: str) -> None:
        self._text += delta
        if self._broken or not self._text[self._done:].strip():
            return
        self._kick()

    async def finish(self) -> None:
        """Show whatever is not shown yet (trying once more if a post failed) and wait until it is."""
        self._broken = False
        self._closing = True
        if self._text[self._done:].strip():
            self._kick()
        await self._join()

    async def working(self) -> None:
        """The model is slow to say anything: a placeholder that its first words will replace."""
        if self.messages or self._text[self._done:].strip() or self._pending_first:
            return
        ts = await self._poster.post(self._channel, self._thread_ts, WORKING, where=self._where, raw=True)
        if ts is None:
            return
        if self.messages or self._pending_first:  # the first words overtook it: they stand alone
            await self._poster.delete(self._channel, ts, where=self._where)
            return
        self._live, self._live_text, self._placeholder = ts, WORKING, True
        self.messages.append(ts)
        self._posted.set()

    async def finish_behind(self) -> None:
        """Finish like ``finish``, but wait only until the answer's first message is posted: its last update
        (which may wait on the workspace's budget) follows by itself, and new posts such as safety notices
        need not wait behind it."""
        self._broken = False
        self._closing = True
        if self._text[self._done:].strip():
            self._kick()
        if self._task is not None and not self._task.done():
            await asyncio.shield(self._posted.wait())

    async def replace(self, text: str) -> None:
        """The engine settled on other words (an API refusal): show ``text`` in place of the stream."""
        await self._halt()
        extra, self.messages = self.messages[1:], self.messages[:1]
        for ts in extra:
            await self._poster.delete(self._channel, ts, where=self._where)
        self._live = self.messages[0] if self.messages else None
        self._live_text, self._text, self._done, self._broken = "", text, 0, False
        self._halted, self._closing = False, True
        self._kick()
        await self._join()

    async def discard(self) -> None:
        """Nothing of the stream stands (the turn failed): remove what was posted."""
        await self._halt()
        for ts in self.messages:
            await self._poster.delete(self._channel, ts, where=self._where)
        self.messages, self._live, self._broken = [], None, True

    # --- the updater ----------------------------------------------------------------------------

    def _kick(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            if not self.messages:
                self._posted.clear()
            self._task = asyncio.create_task(self._run(), name=f"slack stream {self._where}")

    async def _join(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _halt(self) -> None:
        self._halted = True
        self._wake.set()
        await self._join()

    @property
    def _behind(self) -> bool:
        pending = self._text[self._done:]
        return bool(pending.strip()) and split_text(pending, self._poster.limit) != [self._live_text]

    async def _run(self) -> None:
        try:
            await self._update_loop()
        finally:
            self._posted.set()

    async def _update_loop(self) -> None:
        while not self._halted:
            if not self._behind or self._broken:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._live is not None and not self._placeholder:  # the first words go at once; updates are paced
                await self._pause_until(self._last + self._interval)
                if self._halted:
                    return
                if not await self._take_budget():
                    return
            self._wake.clear()
            if not await self._flush():
                if self._closing:
                    return  # the last try at the end failed: the engine's outcome still goes out
                await self._wake.wait()  # try again with the next text

    async def _pause_until(self, when: float) -> None:
        """Sleep until ``when`` (on ``clock``) unless the reply is finishing."""
        delay = when - self._clock()
        if delay > 0 and not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing_signal(), delay)

    async def _closing_signal(self) -> None:
        while not (self._closing or self._halted):
            self._wake.clear()
            await self._wake.wait()

    async def _take_budget(self) -> bool:
        budget = self._poster.budget
        if budget is None:
            return True
        while not self._halted:
            wait = await budget.wait_seconds(self._poster.workspace_of(self._where))
            if wait <= 0:
                return True
            self.waited += wait
            await asyncio.sleep(wait)
        return False

    async def _flush(self) -> bool:
        """Show the latest text; False when a post or update failed (a 429 is waited out, not failed)."""
        pending = split_text(self._text[self._done:], self._poster.limit)
        if not pending:
            return True
        try:
            for piece in pending[:-1]:
                shown = await self._show(piece)
                if shown != "ok":
                    return shown == "retry"
                self._done = self._text.find(piece, self._done) + len(piece)
                self._live, self._live_text = None, ""
            return await self._show(pending[-1]) != "failed"
        finally:
            self._placeholder = False
            self._last = self._clock()

    async def _show(self, piece: str) -> str:
        """``ok``, ``failed``, or ``retry`` (a 429 was waited out: show the latest text again)."""
        if self._live is None:
            ts = await self._poster.post(self._channel, self._thread_ts, piece, where=self._where)
            if ts is None:
                self._broken = True  # the engine's outcome still goes out; the stream stops trying
                return "failed"
            self._live = ts
            self.messages.append(ts)
            self._posted.set()
        elif piece != self._live_text:
            self.updates += 1
            try:
                result = await self._poster.update_streamed(self._channel, self._live, escape(piece),
                                                            where=self._where)
            except MessageGone as gone:
                log.info("%s: streamed message not there to update (%s): posting it anew", self._where, gone)
                self.messages.pop()  # the live message is always the last one
                self._live = None
                return await self._show(piece)
            if result is False:
                return "failed"
            if result is not True:  # a 429: wait it out (the whole workspace does), then send the latest
                await self._rate_limited(result)
                return "retry"
        self._live_text = piece
        return "ok"

    async def _rate_limited(self, seconds: float) -> None:
        workspace = self._poster.workspace_of(self._where)
        if self._poster.budget is not None:
            await self._poster.budget.pause(workspace, seconds)
        log.info("%s: chat.update rate limited; next update in %.1f s", self._where, seconds)
        self.waited += seconds
        await asyncio.sleep(seconds)
