"""The Slack run mode: a slack-bolt ``AsyncApp`` over Socket Mode or the HTTP events endpoint.

A member's message is accepted into its thread's inbox in Redis (one round trip) before Bolt acknowledges
the event, so an acknowledged message is answered even if this process dies: the turn pipeline
answers it here or in another Slack process, through the delivery sink registered below. Everything else
a listener starts runs after the acknowledgement in a bounded task set, drained on shutdown.
Redeliveries are deduplicated on the event id when the message is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp, AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from adapters.delivery import Delivery
from bot.bootstrap import Runtime, build_runtime
from bot.metrics import Metrics
from bot.store.budget import Rate, SharedBudget
from config.settings import Settings
from config.slack import SlackSettings

from .appeal import ACTION as APPEAL_ACTION
from .appeal import VIEW as APPEAL_VIEW
from .appeal import Appeals
from .commands import Commands, Moderators
from .conversations import Conversations, SlackSink, SlackSurface
from .gate import RequestGate, unusable
from .identity import IdentityCache, SingleWorkspaceAuthorize
from .modlog import ModLog
from .oauth import Workspaces
from .replies import CHANNEL_POSTS, POSTS, Poster
from .shared import ACTION as OWN_ACTION
from .shared import OwnConversations
from .tasks import EventTasks, OverCapacity
from .workspaces import Tokens, WorkspaceIdentities, WorkspaceSink, WorkspaceWebClient

log = logging.getLogger(__name__)

END_SHORTCUT = "threadguard_end"
COMMAND = "/threadguard"
_BUSY = "I'm handling a lot right now. Please try again in a minute."


class _CountedRateLimitRetries(AsyncRateLimitErrorRetryHandler):
    """Retries a 429 after its Retry-After, and counts it."""

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics

    async def _can_retry_async(self, **kwargs: Any) -> bool:
        limited = await super()._can_retry_async(**kwargs)
        if limited:
            self._metrics.rate_limited("slack", str(kwargs["request"].url).rsplit("/", 1)[-1])
        return limited


def web_client(slack: SlackSettings, *, metrics: Metrics | None = None, retry_rate_limits: bool = True,
               tokens: Tokens | None = None) -> AsyncWebClient:
    """The Web API client with retries on 429 (obeying Retry-After), on 500/503 and on connection errors.
    Without ``retry_rate_limits`` a 429 comes back at once (the streaming updater waits it out itself).
    With ``tokens`` (many workspaces) each call carries its workspace's token."""
    interval = FixedValueRetryIntervalCalculator(fixed_internal=slack.retry_interval)
    handlers: list[Any] = [
        AsyncServerErrorRetryHandler(max_retry_count=slack.server_error_retries, interval_calculator=interval),
        AsyncConnectionErrorRetryHandler(max_retry_count=slack.connection_error_retries, interval_calculator=interval),
    ]
    if retry_rate_limits:
        handlers.insert(0, _CountedRateLimitRetries(metrics or Metrics(), max_retry_count=slack.rate_limit_retries))
    if tokens is not None:
        return WorkspaceWebClient(tokens=tokens, base_url=slack.api_base_url, timeout=slack.api_timeout,
                                  retry_handlers=handlers)
    return AsyncWebClient(token=slack.require_bot_token(), base_url=slack.api_base_url, timeout=slack.api_timeout,
                          retry_handlers=handlers)


def slack_budget(runtime: Runtime, slack: SlackSettings) -> SharedBudget:
    """The budgets of the methods a streamed answer calls, per workspace, shared by every process."""
    burst = slack.update_burst
    return SharedBudget(runtime.redis, {
        "chat.update": Rate(slack.update_budget_per_minute, burst),
        "chat.startStream": Rate(slack.stream_budget_per_minute, burst),
        "chat.stopStream": Rate(slack.stream_budget_per_minute, burst),
        "chat.appendStream": Rate(slack.append_budget_per_minute, burst),
        POSTS: Rate(slack.posts_per_minute, slack.post_burst),
        CHANNEL_POSTS: Rate(slack.channel_posts_per_minute, slack.channel_post_burst),
    })


class SlackBot:
    """The Bolt app wired to the engine. ``app`` is what Socket Mode or the HTTP endpoint dispatches to."""

    def __init__(self, runtime: Runtime, slack: SlackSettings, *, client: AsyncWebClient | None = None) -> None:
        self.runtime = runtime
        self.slack = slack
        metrics = runtime.engine.metrics
        #: Many workspaces (``SLACK_CLIENT_ID``): installations in Redis, a token per workspace.
        self.workspaces = Workspaces(runtime.redis, slack) if slack.multi_workspace else None
        tokens = self.workspaces.tokens if self.workspaces else None
        self.client = client or web_client(slack, metrics=metrics, tokens=tokens)
        self.tasks = EventTasks(max_concurrent=slack.max_concurrent_events, max_pending=slack.max_pending_events)
        identities = WorkspaceIdentities(self.client) if self.workspaces else None
        self.identity = identities or IdentityCache(self.client)
        poster = Poster(self.client, limit=slack.message_limit, metrics=metrics, budget=slack_budget(runtime, slack),
                        stream_client=web_client(slack, retry_rate_limits=False, tokens=tokens),
                        streams=slack.streaming, headroom=slack.stream_headroom)
        self.modlog = ModLog(self.client, poster, runtime.communities, slack)
        self.surface = SlackSurface(poster, self.modlog, self.identity)
        self.delivery = Delivery(self.surface, later=self._later)
        sink = SlackSink(self.surface, self.delivery, slack)
        self.sink: SlackSink | WorkspaceSink = WorkspaceSink(sink) if self.workspaces else sink
        runtime.pipeline.register_sink("slack", self.sink)
        runtime.worker_polling_notices(slack.notice_poll_interval)
        self.conversations = Conversations(runtime.member_actions, runtime.communities, slack, self.surface,
                                           self.delivery, self._later)
        moderators = Moderators(self.client, runtime.communities, slack)
        self.commands = Commands(runtime.member_actions, runtime.cases, runtime.moderation, moderators, self.surface,
                                 self.delivery)
        self.appeals = Appeals(self.client, runtime.review, poster, self.modlog, self.identity)
        self.own = OwnConversations(runtime.member_actions, poster, self.identity)
        secret = slack.signing_secret.get_secret_value() if slack.signing_secret else ""
        self._refused = 0
        self._refused_logged = 0.0
        self.gate = RequestGate(secret) if secret else None
        bolt_log = logging.getLogger("threadguard.slack.bolt")
        if self.workspaces:
            options = self.workspaces.app_options()
        else:
            bolt_log.addFilter(SingleWorkspaceAuthorize.quiet)
            options = {"authorize": SingleWorkspaceAuthorize(self.identity, self.client.token or "")}
        self.app = AsyncApp(client=self.client, signing_secret=secret, process_before_response=True,
                            name="threadguard", logger=bolt_log, **options)
        if self.workspaces and identities:
            self.workspaces.attach(self.app, identities)
        self._register()
        self._guard()

    def _spawn(self, work: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        try:
            self.tasks.spawn(work, name=name)
        except OverCapacity:
            self._over_capacity()
            raise

    def _later(self, work: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Follow-up work of an event already acknowledged (a reminder, an edit); skipped when full."""
        with contextlib.suppress(OverCapacity):
            self._spawn(work, name)

    def _over_capacity(self) -> None:
        """One WARNING line with counts, at most every 10 s, never a traceback per event."""
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= 10.0:
            log.warning("over capacity: %d follow-up task(s) refused since the last report (%d in progress)",
                        self._refused, self.tasks.pending)
            self._refused, self._refused_logged = 0, now

    def _register(self) -> None:
        app, conv, cmds = self.app, self.conversations, self.commands

        @app.event("app_mention")
        async def on_mention(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
            # accepted into Redis before Bolt acknowledges; the workspace's token downloads its files
            await conv.on_mention(body, event, token=context.bot_token)

        @app.event("message")
        async def on_message(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
            await conv.on_message(body, event, token=context.bot_token)

        @app.command(COMMAND)
        async def on_command(ack: Any, body: dict[str, Any], respond: Any) -> None:
            try:
                self._spawn(lambda: cmds.command(body, respond), "command")
            except OverCapacity:
                await ack(text=_BUSY)
                return
            await ack()

        @app.action(APPEAL_ACTION)
        async def on_appeal(ack: Any, body: dict[str, Any]) -> None:
            await ack()  # within Slack's 3 seconds; the modal opens right after with the click's trigger
            with contextlib.suppress(OverCapacity):
                self._spawn(lambda: self.appeals.clicked(body), "appeal click")

        @app.action(OWN_ACTION)
        async def on_own_conversation(ack: Any, body: dict[str, Any]) -> None:
            await ack()
            with contextlib.suppress(OverCapacity):
                self._spawn(lambda: self.own.clicked(body), "own conversation click")

        @app.view(APPEAL_VIEW)
        async def on_appeal_form(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
            await ack()  # closes the modal; the member is answered privately in the thread
            with contextlib.suppress(OverCapacity):
                self._spawn(lambda: self.appeals.submitted(body, view), "appeal form")

        @app.shortcut(END_SHORTCUT)
        async def on_end_shortcut(ack: Any, body: dict[str, Any], respond: Any) -> None:
            await ack()
            with contextlib.suppress(OverCapacity):
                self._spawn(lambda: cmds.shortcut(body, respond), "end shortcut")

    def _guard(self) -> None:
        """A listener that fails on an event (what ``gate`` lets through is still untrusted in its details) has
        it acknowledged and logged once, never answered 500 (Slack would send it again) with a traceback."""
        app = self.app

        @app.error
        async def failed(error: Exception, body: dict[str, Any]) -> BoltResponse:
            log.warning("slack event %s acknowledged after its listener failed (%s)", _event_id(body),
                        type(error).__name__)
            log.debug("listener failure", exc_info=error)
            return BoltResponse(status=200, body="")

    async def start(self) -> None:
        """Learn who the bot is, post the cases an earlier process filed but never delivered, and start
        the background duties (recovery, pending cases, queued notices)."""
        if self.workspaces:
            await self.workspaces.start()
        await self.identity.get()
        for case in await self.runtime.case_filing.reconcile():
            if case.platform == "slack":
                await self.sink.case(case)
        self.runtime.worker.start()

    async def relay_notices(self) -> int:
        """Post the notices other processes queued for Slack threads now (the worker does it every few s)."""
        return await self.runtime.worker.relay_notices_once()

    async def drain(self, within: float | None = None) -> bool:
        """Wait for every accepted event and every running turn to be done (tests; shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            if not await self.runtime.pipeline.idle(left):
                return False
            left = None if deadline is None else max(0.0, deadline - loop.time())
            if not await self.tasks.drain(left):
                return False
            if not self.runtime.pipeline.active and not self.tasks.pending:
                return True

    async def aclose(self) -> None:
        """Take no more threads, let running turns finish within the grace, hand the leases back."""
        await self.runtime.worker.stop(self.runtime.settings.worker.shutdown_grace)
        await self.tasks.aclose(self.slack.shutdown_grace)
        if self.workspaces:
            await self.workspaces.aclose()
        for client in (self.client, self.surface.poster.stream_client):
            session = getattr(client, "session", None)
            if session is not None and not session.closed:
                await session.close()

    # --- HTTP mode ----------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        """The events endpoint (its signature checked on the raw bytes first, see ``gate``) plus ``GET /healthz``."""
        async def events(request: web.Request) -> web.Response:
            raw = await request.read()
            if self.gate is not None:
                refused = self.gate.check(raw, request.headers, request.content_type)
                if refused is not None:
                    log.warning("slack request from %s answered %d: %s", request.remote, refused.status,
                                refused.reason)
                    return web.Response(status=refused.status)
            try:
                bolt = AsyncBoltRequest(body=raw.decode("utf-8"), query=request.query_string,
                                        headers=request.headers)  # type: ignore[arg-type]
                response = await self.app.async_dispatch(bolt)
            except Exception as exc:  # signed, but not something Bolt could read: Slack must not resend it
                log.warning("slack request acknowledged and dropped: Bolt could not read it (%s)", type(exc).__name__)
                return web.Response(status=200)
            if response.status == 404:  # signed, but nothing here listens for it: Slack must not resend it
                log.info("slack request acknowledged: no listener for it")
                return web.Response(status=200)
            return await to_aiohttp_response(response)

        async def health(_: web.Request) -> web.Response:
            return web.json_response({"ok": True, "pending": self.tasks.pending,
                                      "threads": self.runtime.pipeline.active})

        application = web.Application(client_max_size=1024 * 1024)
        application.add_routes([web.post(self.slack.http_path, events), web.get("/healthz", health)])
        if self.workspaces:
            application.add_routes(self.workspaces.routes(self.app))
        return application

    def install_app(self) -> web.Application:
        """Socket Mode's HTTP listener: the install and redirect pages only."""
        application = web.Application(client_max_size=64 * 1024)
        if self.workspaces:
            application.add_routes(self.workspaces.routes(self.app))
        return application


def _event_id(body: Any) -> str:
    value = body.get("event_id") if isinstance(body, dict) else None
    return value if isinstance(value, str) and value.isascii() else "-"


def create_bot(runtime: Runtime, slack: SlackSettings, *, client: AsyncWebClient | None = None) -> SlackBot:
    return SlackBot(runtime, slack, client=client)


def build_app(runtime: Runtime, slack: SlackSettings, *, client: AsyncWebClient | None = None) -> AsyncApp:
    """The Bolt app alone (for embedding it elsewhere); use ``create_bot`` to also drain its work."""
    return create_bot(runtime, slack, client=client).app


async def run_slack(settings: Settings, http_port: int | None = None, *, runtime: Runtime | None = None,
                    slack: SlackSettings | None = None, host: str = "0.0.0.0",  # noqa: S104 - a server
                    stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set): Socket Mode, or HTTP on ``http_port``."""
    slack = slack or SlackSettings()
    if slack.multi_workspace:
        slack.require_token_key()
    else:
        slack.require_bot_token()
    if http_port is None:
        slack.require_app_token()
    else:
        slack.require_signing_secret()
    own_runtime = runtime is None
    runtime = runtime or build_runtime(settings)
    stop = stop or asyncio.Event()
    installed = _on_signals(stop)
    bot = create_bot(runtime, slack)
    try:
        await bot.start()
        if http_port is None:
            await _socket_mode(bot, slack, stop)
        else:
            await _http(bot, host, http_port, stop)
    finally:
        await bot.aclose()
        if own_runtime:
            await runtime.aclose()
        loop = asyncio.get_running_loop()
        for sig in installed:
            loop.remove_signal_handler(sig)


class _CheckedSocketModeHandler(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler, but an envelope the listeners cannot use (see ``gate.unusable``), or that
    Bolt itself cannot read, is acknowledged and logged once instead of failing without an ack."""

    async def handle(self, client: Any, req: SocketModeRequest) -> None:  # type: ignore[override]
        problem = unusable(req.payload)
        if problem is None:
            try:
                await super().handle(client, req)
                return
            except Exception as exc:  # whatever Bolt fails on, the envelope is acknowledged
                problem = f"Bolt could not read it ({type(exc).__name__})"
        log.warning("slack envelope %s acknowledged and dropped: %s", _event_id(req.payload), problem)
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


async def _socket_mode(bot: SlackBot, slack: SlackSettings, stop: asyncio.Event) -> None:
    handler = _CheckedSocketModeHandler(bot.app, slack.require_app_token(), web_client=bot.client)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    log.info("slack: connected in Socket Mode")
    bot.runtime.serving = True
    try:
        if bot.workspaces and slack.install_port:  # the install pages need an HTTP listener of their own
            await _http(bot, "0.0.0.0", slack.install_port, stop, install_only=True)  # noqa: S104 - a server
        else:
            await stop.wait()
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]


async def _http(bot: SlackBot, host: str, port: int, stop: asyncio.Event, *, install_only: bool = False) -> None:
    runner = web.AppRunner(bot.install_app() if install_only else bot.web_app(), shutdown_timeout=5)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        if install_only:
            log.info("slack: HTTP install pages on %s:%d", host, port)
        else:
            log.info("slack: HTTP events endpoint on %s:%d%s", host, port, bot.slack.http_path)
        bot.runtime.serving = True
        await stop.wait()
    finally:
        await runner.cleanup()


def _on_signals(stop: asyncio.Event) -> list[signal.Signals]:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    return installed
