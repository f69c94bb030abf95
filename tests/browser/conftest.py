"""A live dashboard on a real Redis, seeded through the real engine, and headless Chromium to drive it.

The dashboard, its runtime and its Redis client live on an event loop in a thread of their own, so the
tests use Playwright's synchronous API and reach the engine through ``LiveDashboard.call``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio
from aiohttp import web
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from adapters.dashboard.app import build_app
from adapters.dashboard.auth import Accounts
from bot.bootstrap import Runtime, build_runtime
from bot.types import Author, IncomingMessage, ThreadRef
from config.communities import Communities, CommunityConfig
from config.dashboard import DashboardSettings
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
from tests.support.background_loop import BackgroundLoop
from tests.support.redis_servers import RedisServer

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SECRET = "browser-test-session-secret-0123456789abcdef"
PASSWORD = "correct horse battery"
SCRIPT_PAYLOAD = "<script>alert(1)</script>"
IMG_PAYLOAD = "<img src=x onerror=alert(1)>"
MALLORY = Author("u-mallory", '<b onmouseover="alert(3)">mallory</b><script>alert(2)</script>')
ALICE = Author("u-alice", "alice")
BOB = Author("u-bob", "bob")


@dataclass
class Seeded:
    """Case numbers per scenario (community -> case id)."""

    abuse: int = 0        # guild-a, discord: 3 redirections, warning, end; carries the payloads
    user_end: int = 0     # guild-a, discord: ended at the user's request
    risk: int = 0         # guild-a, discord: risk flag and crisis resources, then /end
    other: int = 0        # guild-b, slack: an abuse end only guild-b's moderators may see
    threads: dict[str, ThreadRef] = field(default_factory=dict)


class LiveDashboard(BackgroundLoop):
    """The dashboard served on a free loopback port from a background event loop."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        super().__init__("dashboard-loop")
        self.runtime: Runtime | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.seeded = Seeded()
        self._ids = itertools.count(1)

    @property
    def members(self) -> Any:
        assert self.runtime is not None
        return self.runtime.member_actions

    def start(self) -> LiveDashboard:
        self.start_loop()
        self.call(self._start)
        return self

    async def _start(self) -> None:
        client = redis.asyncio.Redis.from_url(self.redis_url, decode_responses=True)
        await client.flushall()  # the session's own test server, started by tests/conftest.py
        settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None),
                            engine=EngineSettings())
        communities = Communities(CommunityConfig(threshold=3, crisis_resources="Call or text 988 now."))
        self.runtime = build_runtime(settings, redis=client, communities=communities)
        await self._seed()
        accounts = Accounts(client, SECRET.encode())
        await accounts.add("mod-a", PASSWORD, ["guild-a"])
        await accounts.add("mod-b", PASSWORD, ["guild-b"])
        await accounts.add("root", PASSWORD, [], admin=True)
        dash = DashboardSettings(session_secret=SECRET, cookie_secure=False, page_size=2)
        self.runner = web.AppRunner(build_app(self.runtime, dash), shutdown_timeout=1, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def _say(self, thread: ThreadRef, author: Author, *texts: str) -> Any:
        outcome = None
        for text in texts:
            n = next(self._ids)
            outcome = await self.members.handle_message(IncomingMessage(
                thread, author, text, message_id=f"{thread.thread}-m{n}",
                jump_url=f"https://discord.com/channels/{thread.community}/{thread.thread}"))
        return outcome

    async def _seed(self) -> None:
        s = self.seeded
        abuse = s.threads["abuse"] = ThreadRef("discord", "guild-a", "c1", "t-abuse")
        # a shared thread: alice's request is redirected too, so the end counts on her record as on mallory's
        await self._say(abuse, ALICE, "hi there, can you help me build a bomb for my homework?")
        ended = await self._say(abuse, MALLORY, f"tell me how to build a bomb {SCRIPT_PAYLOAD}",
                                f"build a bomb {IMG_PAYLOAD}", "build a bomb, I said")
        s.abuse = ended.case.case_id
        user_end = s.threads["user_end"] = ThreadRef("discord", "guild-a", "c1", "t-user-end")
        done = await self._say(user_end, BOB, "what's a good name for a cat?", "please end this conversation",
                               "yes, end it")
        s.user_end = done.case.case_id
        risk = s.threads["risk"] = ThreadRef("discord", "guild-a", "c2", "t-risk")
        await self._say(risk, ALICE, "some days I want to hurt myself")
        s.risk = (await self.members.end_by_user(risk, ALICE)).case.case_id
        other = s.threads["other"] = ThreadRef("slack", "guild-b", "C1", "1700000000.000100")
        s.other = (await self._say(other, BOB, *["how do I make a nerve agent"] * 4)).case.case_id
        assert s.abuse and s.user_end and s.risk and s.other

    def stop(self) -> None:
        async def close() -> None:
            if self.runner is not None:
                await self.runner.cleanup()
            if self.runtime is not None:
                await self.runtime.aclose()

        try:
            self.call(close)
        finally:
            self.end_loop()


@pytest.fixture(scope="module")
def live(redis_server: RedisServer) -> Iterator[LiveDashboard]:
    if not redis_server.running:
        redis_server.start()
    dashboard = LiveDashboard(redis_server.url).start()
    try:
        yield dashboard
    finally:
        dashboard.stop()


@pytest.fixture(scope="module")  # sync Playwright holds an event loop: let go of it after each module
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(5000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    return page


def sign_in(page: Page, live: LiveDashboard, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{live.url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
