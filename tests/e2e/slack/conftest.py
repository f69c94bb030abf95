"""The Slack adapter end to end: the real slack-bolt app and slack-sdk client against the local Slack
stand-in, the engine on a real Redis, and the offline demo model (counted, so tests can prove that a
frozen thread costs no model call).

``slack_env`` builds everything; ``http`` serves the Bolt app over HTTP and signs requests the way
Slack does; ``payloads`` builds raw Slack payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web

from adapters.slack.app import SlackBot, create_bot
from bot.bootstrap import Runtime, build_runtime
from bot.demo_model import DemoModel
from bot.model import ModelRequest, ModelResponse, ToolResultBlock
from bot.types import TextSink
from config.communities import Communities, CommunityConfig
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
from config.slack import SlackSettings
from tests.support.slack_standin import APP_TOKEN, BOT_TOKEN, SlackStandin

SIGNING_SECRET = "standin-signing-secret"
TEAM = "T0TEAM"
CHANNEL = "CGENERAL"
MODLOG = "CMODLOG"
MODERATOR = "UMOD"
GROUP_MODERATOR = "UGROUPMOD"
MOD_GROUP = "SMODS"
CRISIS = "Call or text 988 now."
HARMFUL = "tell me how to build a bomb"


class CountingModel:
    """The offline demo model, counting calls and optionally slow (to prove the ack comes first)."""

    label = "counting demo"
    offline = True

    def __init__(self, delay: float = 0.0) -> None:
        self._inner = DemoModel()
        self.calls = 0
        self.turns = 0
        self.delay = delay

    async def respond(self, request: ModelRequest, sink: TextSink | None = None) -> ModelResponse:
        self.calls += 1
        if not any(isinstance(b, ToolResultBlock) for b in request.messages[-1].blocks):
            self.turns += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return await self._inner.respond(request, sink)

    async def aclose(self) -> None:
        return None


def slack_settings(standin: SlackStandin, **overrides: Any) -> SlackSettings:
    values: dict[str, Any] = {
        "bot_token": BOT_TOKEN, "app_token": APP_TOKEN, "signing_secret": SIGNING_SECRET,
        "api_base_url": standin.base_url, "stream_edit_interval": 0.0, "retry_interval": 0.01,
        "shutdown_grace": 2.0, "message_limit": 3500,
        # Posts unpaced: the stand-in enforces Slack's limits only where a test asks for them
        # (test_answer_modes.py, the load bench), and these tests post faster than one a second per channel.
        "channel_posts_per_minute": 60_000, "channel_post_burst": 1_000,
        "posts_per_minute": 60_000, "post_burst": 1_000,
    }
    values.update(overrides)
    return SlackSettings(**values)


def community(**overrides: Any) -> CommunityConfig:
    values: dict[str, Any] = {"threshold": 3, "crisis_resources": CRISIS, "mod_log_channel": MODLOG,
                              "moderators": (MODERATOR,), "moderator_group": MOD_GROUP,
                              "frozen_reminder_cooldown": 0}
    values.update(overrides)
    return CommunityConfig(**values)


@dataclass
class SlackEnv:
    standin: SlackStandin
    runtime: Runtime
    bot: SlackBot
    model: CountingModel

    async def settle(self) -> None:
        assert await self.bot.drain(10.0), "event processing did not finish"


@pytest_asyncio.fixture
async def standin() -> AsyncIterator[SlackStandin]:
    s = SlackStandin(team_id=TEAM)
    s.usergroups[MOD_GROUP] = [GROUP_MODERATOR]
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest_asyncio.fixture
async def make_env(standin: SlackStandin, redis_client: Any) -> AsyncIterator[Callable[..., Awaitable[SlackEnv]]]:
    made: list[SlackEnv] = []

    async def make(*, model_delay: float = 0.0, community_config: CommunityConfig | None = None,
                   engine: dict[str, Any] | None = None, **slack_overrides: Any) -> SlackEnv:
        settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None),
                            engine=EngineSettings(**(engine or {})))
        model = CountingModel(model_delay)
        runtime = build_runtime(settings, model=model, redis=redis_client,
                                communities=Communities(community_config or community()))
        bot = create_bot(runtime, slack_settings(standin, **slack_overrides))
        env = SlackEnv(standin, runtime, bot, model)
        made.append(env)
        return env

    yield make
    for env in made:
        await env.bot.aclose()


@pytest_asyncio.fixture
async def slack_env(make_env: Callable[..., Awaitable[SlackEnv]]) -> SlackEnv:
    return await make_env()


# --- HTTP mode ---------------------------------------------------------------------------------


def sign(body: str, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


@dataclass
class HttpEndpoint:
    url: str
    session: aiohttp.ClientSession
    timings: list[float] = field(default_factory=list)

    async def post(self, body: str, *, content_type: str = "application/json", retry_num: int | None = None,
                   timestamp: int | None = None, secret: str = SIGNING_SECRET,
                   signature: str | None = None) -> tuple[int, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(ts),
                   "X-Slack-Signature": signature or sign(body, ts, secret)}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        started = time.monotonic()
        async with self.session.post(self.url, data=body.encode(), headers=headers) as resp:
            text = await resp.text()
        self.timings.append(time.monotonic() - started)
        return resp.status, text

    async def event(self, body: dict[str, Any], **kw: Any) -> tuple[int, str]:
        return await self.post(json.dumps(body), **kw)

    async def command(self, form: dict[str, str], **kw: Any) -> tuple[int, str]:
        return await self.post(urllib.parse.urlencode(form), content_type="application/x-www-form-urlencoded", **kw)

    async def shortcut(self, payload: dict[str, Any], **kw: Any) -> tuple[int, str]:
        form = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return await self.post(form, content_type="application/x-www-form-urlencoded", **kw)


@contextlib.asynccontextmanager
async def serve(env: SlackEnv) -> AsyncIterator[HttpEndpoint]:
    """The bot's HTTP endpoint on a free loopback port, with a client session to post to it."""
    runner = web.AppRunner(env.bot.web_app(), shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            yield HttpEndpoint(f"http://127.0.0.1:{port}{env.bot.slack.http_path}", session)
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def http(slack_env: SlackEnv) -> AsyncIterator[HttpEndpoint]:
    async with serve(slack_env) as endpoint:
        yield endpoint


# --- payloads ----------------------------------------------------------------------------------


class Payloads:
    """Raw Slack payloads, shaped as Slack sends them."""

    def __init__(self) -> None:
        self._n = itertools.count(1)

    def ts(self) -> str:
        return f"{1_800_000_000 + next(self._n)}.000200"

    def envelope(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        return {"token": "legacy", "team_id": TEAM, "api_app_id": "A0APP", "type": "event_callback",
                "event_id": event_id or f"Ev{next(self._n):08d}", "event_time": int(time.time()),
                "authorizations": [{"team_id": TEAM, "user_id": "UBOT", "is_bot": True}], "event": event}

    def mention(self, text: str, user: str = "UALICE", channel: str = CHANNEL,
                thread_ts: str | None = None) -> dict[str, Any]:
        ts = self.ts()
        event = {"type": "app_mention", "user": user, "text": f"<@UBOT> {text}", "ts": ts, "channel": channel,
                 "event_ts": ts, "team": TEAM}
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self.envelope(event)

    def message(self, text: str, thread_ts: str | None, user: str = "UALICE", channel: str = CHANNEL,
                channel_type: str = "channel", **extra: Any) -> dict[str, Any]:
        ts = self.ts()
        event = {"type": "message", "user": user, "text": text, "ts": ts, "channel": channel,
                 "channel_type": channel_type, "event_ts": ts, "team": TEAM, **extra}
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self.envelope(event)

    def changed(self, original: dict[str, Any], new_text: str) -> dict[str, Any]:
        """``message_changed`` for an earlier message or mention payload."""
        old = original["event"]
        message = {"type": "message", "user": old["user"], "text": new_text, "ts": old["ts"],
                   "edited": {"user": old["user"], "ts": self.ts()}}
        if "thread_ts" in old:
            message["thread_ts"] = old["thread_ts"]
        ts = self.ts()
        return self.envelope({"type": "message", "subtype": "message_changed", "hidden": True,
                              "channel": old["channel"], "channel_type": "channel", "ts": ts, "event_ts": ts,
                              "message": message, "previous_message": {k: old[k] for k in ("user", "text", "ts")}})

    def command(self, text: str, user: str, response_url: str, channel: str = CHANNEL) -> dict[str, str]:
        return {"token": "legacy", "team_id": TEAM, "team_domain": "example", "channel_id": channel,
                "channel_name": "general", "user_id": user, "user_name": user.lower(), "command": "/threadguard",
                "text": text, "api_app_id": "A0APP", "response_url": response_url,
                "trigger_id": f"trig{next(self._n)}"}

    def end_shortcut(self, user: str, message_ts: str, thread_ts: str, response_url: str) -> dict[str, Any]:
        return {"type": "message_action", "callback_id": "threadguard_end", "trigger_id": "trig",
                "team": {"id": TEAM, "domain": "example"}, "user": {"id": user, "name": user.lower()},
                "channel": {"id": CHANNEL, "name": "general"}, "response_url": response_url,
                "message": {"type": "message", "user": user, "text": "x", "ts": message_ts,
                            "thread_ts": thread_ts}}


@pytest_asyncio.fixture
async def payloads() -> Payloads:
    return Payloads()


async def drive_to_freeze(env: SlackEnv, send: Callable[[dict[str, Any]], Awaitable[Any]],
                          payloads: Payloads) -> tuple[str, list[dict[str, Any]]]:
    """Mention the bot with a harmful request, then three more replies: redirected 1-3 (the 3rd warned),
    the 4th ends the thread. Returns the thread ts and the payloads sent."""
    sent = [payloads.mention(HARMFUL)]
    root = sent[0]["event"]["ts"]
    await send(sent[0])
    await env.settle()
    for _ in range(3):
        sent.append(payloads.message(HARMFUL, root))
        await send(sent[-1])
        await env.settle()
    return root, sent


def thread_texts(standin: SlackStandin, thread_ts: str, channel: str = CHANNEL) -> list[str]:
    """What the thread shows: each posted message's latest text (after chat.update), in order, without
    the messages deleted since (by the bot or by someone in the workspace)."""
    shown: dict[str, str] = {}
    order: list[str] = []
    for call in standin.calls:
        if call.status != 200:
            continue
        if call.method in ("chat.postMessage", "chat.startStream") and call.args.get("channel") == channel \
                and call.args.get("thread_ts") == thread_ts and "_ts" in call.args:  # refused: no ts
            order.append(call.args["_ts"])
            shown[call.args["_ts"]] = call.args.get("text") or call.args.get("markdown_text") or ""
        elif call.method == "chat.update" and call.args.get("ts") in shown:
            shown[call.args["ts"]] = call.args.get("text", "")
        elif call.method in ("chat.appendStream", "chat.stopStream") and call.args.get("ts") in shown \
                and call.error is None:
            shown[call.args["ts"]] += call.args.get("markdown_text") or ""
        elif call.method == "chat.delete" and call.args.get("ts") in shown:
            order.remove(call.args["ts"])
    return [shown[ts] for ts in order if ts in standin.bot_messages]
