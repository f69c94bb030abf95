"""Settings saved on the dashboard (its settings form, over HTTP, signed in as an operator) while two real
``threadguard slack --http`` workers run: both apply them within 5 s, without a restart, and the ladder
follows (the warning comes at the new threshold, in the new words)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio
from aiohttp import web

from adapters.dashboard.app import build_app
from adapters.dashboard.auth import Accounts
from bot.bootstrap import build_runtime
from config.communities import Communities
from config.dashboard import DashboardSettings
from config.settings import AnthropicSettings, RedisSettings, Settings
from tests.e2e.slack.conftest import TEAM, Payloads, thread_texts
from tests.support.anthropic_standin import AnthropicStandin, Reply, reply, tool_use
from tests.support.redis_servers import RedisServer
from tests.support.slack_standin import SlackStandin
from tests.support.workers import Worker, post_event, worker_env

pytestmark = pytest.mark.timeout(180)

WARNING = "Heads up: {redirects} redirections here."
RELOADED = "community settings reloaded"
SECRET = "live-settings-session-secret-0123456789abcdef"
PASSWORD = "operator password 123"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def redirecting(body: dict[str, Any]) -> Reply:
    """Every member message is redirected (``record_redirection``), then answered."""
    last = body["messages"][-1]["content"]
    if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
        return reply("Let's talk about something else.")
    return reply(tool_use("record_redirection", {"category": "other", "note": "asked for harm"}))


@pytest_asyncio.fixture
async def pair(standin: SlackStandin, anthropic_standin: AnthropicStandin) -> AsyncIterator[list[Worker]]:
    anthropic_standin.responder = redirecting
    with RedisServer() as server:
        env = worker_env(server.url, standin.base_url, anthropic_standin.base_url,
                         THREADGUARD_SETTINGS_INTERVAL="1")
        workers = [Worker(f"s{i}", env).start() for i in range(2)]
        try:
            for worker in workers:
                await worker.ready()
            yield workers
        finally:
            for worker in workers:
                worker.close()


async def until(check: Any, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_a_saved_threshold_reaches_both_workers_within_5_seconds(pair: list[Worker],
                                                                      standin: SlackStandin) -> None:
    client = redis.asyncio.Redis.from_url(pair[0].env["REDIS_URL"], decode_responses=True)
    runtime = build_runtime(Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None)),
                            redis=client, communities=Communities())
    await Accounts(client, SECRET.encode()).add("operator", PASSWORD, [], admin=True)
    runner = web.AppRunner(build_app(runtime, DashboardSettings(session_secret=SECRET, cookie_secure=False)),
                           shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    dashboard = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    payloads = Payloads()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(f"{dashboard}/login") as page:
                csrf = CSRF.search(await page.text())
            assert csrf is not None
            async with browser.post(f"{dashboard}/login", data={"csrf": csrf.group(1), "name": "operator",
                                                                 "password": PASSWORD}) as signed_in:
                assert signed_in.status == 200
            async with browser.get(f"{dashboard}/settings/{TEAM}") as page:
                csrf = CSRF.search(await page.text())
            assert csrf is not None
            saved_at = time.monotonic()
            async with browser.post(f"{dashboard}/settings/{TEAM}", data={
                    "csrf": csrf.group(1), "version": "0", "threshold": "2",
                    "crisis_resources": runtime.communities.get(TEAM).crisis_resources,
                    "texts.warning": WARNING}) as saved:
                assert saved.status == 200 and "Saved" in await saved.text()
        took = [await until(lambda w=w: RELOADED in w.log(), 5.0) for w in pair]
        assert max(took) <= 5.0 and time.monotonic() - saved_at <= 5.0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            for worker in pair:  # each worker answers a thread of its own
                opening = payloads.mention("tell me how to hurt someone")
                thread = opening["event"]["ts"]
                assert await post_event(http, worker.url, opening) == 200
                await until(lambda t=thread: len(thread_texts(standin, t)) >= 1, 20)
                assert await post_event(http, worker.url, payloads.message("tell me, now", thread)) == 200
                await until(lambda t=thread: any("Heads up" in x for x in thread_texts(standin, t)), 20)
                shown = thread_texts(standin, thread)
                assert "Heads up: 2 redirections here." in shown  # at the second redirection, not the third
    finally:
        await runner.cleanup()
        await runtime.aclose()
