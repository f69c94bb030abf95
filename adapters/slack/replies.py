"""Posting to Slack: clean splits of long text, ephemeral notices, and the calls of streamed answers
(``adapters.slack.answer``).

Every Web API failure (after the client's own retries on 429, 5xx and connection errors) is logged
with the thread key and the Slack error code, and reported as ``False``/``None``: a failed post never
stops the rest of an outcome (the freeze, the mod-log post) from being carried out.
"""

from __future__ import annotations

import asyncio
import logging
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


#: Errors of ``chat.startStream`` worth another try later (the next answer); any other refusal means the
#: channel (or, for these, the workspace) does not take streams.
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout",
                              "ClientConnectorError", "ServerDisconnectedError", "TimeoutError",
                              "ClientOSError", "http_500", "http_502", "http_503", "http_504"})
WORKSPACE_STREAM_ERRORS = frozenset({"unknown_method", "missing_scope", "not_allowed_token_type",
                                     "feature_not_enabled", "team_not_allowed"})
#: ``chat.stopStream``/``chat.appendStream`` errors that mean the stream is over (Slack ended it).
STREAM_OVER_ERRORS = frozenset({"message_not_in_streaming_state", "message_not_found", "streaming_state_conflict"})


#: The budgets of ``chat.postMessage``: the workspace's, and each channel's.
POSTS, CHANNEL_POSTS = "chat.postMessage", "chat.postMessage.channel"


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
                 stream_client: AsyncWebClient | None = None, budget: Budget | None = None,
                 streams: bool = True, headroom: int = 1) -> None:
        self.client = client
        self.limit = limit
        self.metrics = metrics or Metrics()
        #: For streamed answers: a client that returns a 429 at once instead of sleeping on it.
        self.stream_client = stream_client or client
        #: The workspace's shared method budgets (None: only each answer's interval paces its calls).
        self.budget = budget
        #: Answers may use Slack's streaming methods (``chat.startStream``…) where a channel takes them.
        self.streams = streams
        #: Slots of a budget an intermediate step leaves for answers' last calls.
        self.headroom = headroom
        #: Channels (``workspace:channel``) and workspaces that refused a stream: answers there are posted
        #: and updated instead.
        self._no_streams: set[str] = set()

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
            await self._post_slot(channel, where)
            try:
                resp = await self.client.chat_postMessage(
                    channel=channel, thread_ts=thread_ts, text=piece, blocks=blocks,
                    unfurl_links=False, unfurl_media=False)
            except API_ERRORS as exc:
                self.failed("chat.postMessage", exc, where)
                return first
            first = first or str(resp.get("ts") or "") or None
        return first

    async def _post_slot(self, channel: str, where: str) -> None:
        """Wait for this post's slot: Slack posts about one message a second per channel and limits a
        workspace's posts, so posts are scheduled across every process instead of refused with a 429."""
        if self.budget is None:
            return
        wait = await self.budget.reserve(self.workspace_of(where), (POSTS, ""), (CHANNEL_POSTS, channel))
        if wait > 0:
            await asyncio.sleep(wait)

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

    def may_stream(self, workspace: str, channel: str, recipient: str | None) -> bool:
        """Whether an answer here may try Slack's streaming methods (a channel's stream is addressed to one
        member, so it needs to know whom)."""
        return (self.streams and recipient is not None and workspace not in self._no_streams
                and f"{workspace}:{channel}" not in self._no_streams)

    async def start_stream(self, channel: str, thread_ts: str, text: str, *, where: str,
                           recipient: str | None) -> str | float | None:
        """``chat.startStream`` with the first words: the stream's ts, the seconds a 429 asks for, or None
        (refused: the channel, or the workspace, is not streamed to again)."""
        if self.withheld("chat.startStream", where):
            return None
        workspace = self.workspace_of(where)
        try:
            resp = await self.stream_client.chat_startStream(
                channel=channel, thread_ts=thread_ts, markdown_text=text, recipient_user_id=recipient,
                recipient_team_id=workspace if workspace != "-" else None)
        except API_ERRORS as exc:
            wait = retry_after(exc)
            if wait is not None:
                self.metrics.rate_limited("slack", "chat.startStream")
                return wait
            code = error_code(exc)
            if code in TRANSIENT_ERRORS:
                self.failed("chat.startStream", exc, where)
                return None
            log.info("%s: chat.startStream refused (%s): answers here are posted and updated", where, code)
            self.metrics.platform_error("slack", code)
            self._no_streams.add(workspace if code in WORKSPACE_STREAM_ERRORS else f"{workspace}:{channel}")
            return None
        return str(resp.get("ts") or "") or None

    async def append_stream(self, channel: str, ts: str, text: str, *, where: str) -> bool | float:
        """``chat.appendStream``: True, False (failed), or the seconds a 429 asks for."""
        if self.withheld("chat.appendStream", where):
            return False
        try:
            await self.stream_client.chat_appendStream(channel=channel, ts=ts, markdown_text=text)
        except API_ERRORS as exc:
            wait = retry_after(exc)
            if wait is None:
                self.failed("chat.appendStream", exc, where)
                return False
            return wait
        return True

    async def stop_stream(self, channel: str, ts: str, text: str, *, where: str) -> bool | float | None:
        """``chat.stopStream`` with the rest of the text: True, False (failed), the seconds a 429 asks for,
        or None when the stream was over already (Slack ended it: the text is set by an update)."""
        if self.withheld("chat.stopStream", where):
            return False
        try:
            await self.stream_client.chat_stopStream(channel=channel, ts=ts, markdown_text=text or None)
        except API_ERRORS as exc:
            wait = retry_after(exc)
            if wait is not None:
                return wait
            self.failed("chat.stopStream", exc, where)
            return None if error_code(exc) in STREAM_OVER_ERRORS else False
        return True

    async def delete(self, channel: str, ts: str, *, where: str) -> bool:
        try:
            await self.client.chat_delete(channel=channel, ts=ts)
        except API_ERRORS as exc:
            self.failed("chat.delete", exc, where)
            return False
        return True


class Budget(Protocol):
    """Slack's method budgets shared by the processes of a workspace (``bot.store.budget.SharedBudget``)."""

    async def spend(self, workspace: str, *methods: str, headroom: int = 0) -> float: ...

    async def pause(self, workspace: str, method: str, seconds: float) -> None: ...

    async def reserve(self, workspace: str, *budgets: tuple[str, str]) -> float: ...


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
