"""A moderator at the real dashboard app (aiohttp, in process) on a test's runtime: signs in, posts the
case and appeal forms with their CSRF token, and reads a member's record the way moderators see it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

from aiohttp.test_utils import TestClient, TestServer

from adapters.dashboard.app import build_app
from adapters.dashboard.auth import Accounts
from bot.bootstrap import Runtime
from config.dashboard import DashboardSettings

SECRET = "moderation-test-session-secret-0123456789abcdef"
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
_STRIKES = re.compile(r'id="member-ends">[^<]*; (\d+) ended for abuse')


class Moderator:
    """One signed-in moderator's browser."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def sign_in(self, name: str) -> None:
        form = await self.client.get("/login")
        token = _CSRF.search(await form.text())
        assert token is not None
        answer = await self.client.post("/login", data={"csrf": token[1], "name": name, "password": PASSWORD},
                                        allow_redirects=False)
        assert answer.status == 303, answer.status

    async def _csrf(self) -> str:
        page = await self.client.get("/cases")
        token = _CSRF.search(await page.text())
        assert token is not None
        return token[1]

    async def post(self, path: str, **form: str) -> str:
        """Submit a form; returns the ``done`` key of the page it lands on."""
        answer = await self.client.post(path, data={"csrf": await self._csrf(), **form}, allow_redirects=False)
        assert answer.status == 303, (path, answer.status)
        location = answer.headers["Location"]
        return location.partition("done=")[2]

    async def case_action(self, community: str, case_id: int, action: str, **form: str) -> str:
        return await self.post(f"/cases/{quote(community, safe='')}/{case_id}/{action}", **form)

    async def decide(self, community: str, case_id: int, member: str, decision: str) -> str:
        return await self.post(f"/appeals/{quote(community, safe='')}/{case_id}/{quote(member, safe='')}/{decision}")

    async def strikes(self, community: str, member: str) -> int:
        """The endings for abuse the member record page counts against ``member``."""
        page = await self.client.get(f"/members/{quote(community, safe='')}/{quote(member, safe='')}")
        assert page.status == 200, page.status
        found = _STRIKES.search(await page.text())
        assert found is not None
        return int(found[1])


@asynccontextmanager
async def dashboard(runtime: Runtime, communities: list[str], *names: str) -> AsyncIterator[list[Moderator]]:
    """The dashboard on ``runtime`` with one signed-in moderator of ``communities`` per name."""
    accounts = Accounts(runtime.redis, SECRET.encode())
    for name in names:
        await accounts.add(name, PASSWORD, communities)
    settings = DashboardSettings(session_secret=SECRET, cookie_secure=False)
    server = TestServer(build_app(runtime, settings))
    clients = [TestClient(server) for _ in names]
    await server.start_server()
    try:
        moderators = []
        for client, name in zip(clients, names, strict=True):
            await client.start_server()
            moderator = Moderator(client)
            await moderator.sign_in(name)
            moderators.append(moderator)
        yield moderators
    finally:
        for client in clients:
            await client.close()
        await server.close()
