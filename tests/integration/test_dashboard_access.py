"""Forged requests against the real dashboard app (aiohttp, real redis-server): a moderator of one
community can change nothing in another through any route that changes state, the appeals queue shows
only their communities' appeals (members' own words), and a POST whose ``Origin`` is not exactly the
dashboard's is refused whatever its CSRF token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.dashboard.app import build_app
from adapters.dashboard.auth import Accounts
from bot.bootstrap import Runtime
from bot.review import ReviewState
from bot.types import ThreadRef, ThreadStatus
from config.dashboard import DashboardSettings
from tests.integration.test_review_desk import ANN, end_thread, runtime_on

SECRET = "access-test-session-secret-0123456789abcdef"
PASSWORD = "correct horse battery"
PUBLIC = "https://dash.example.org"
MINE, THEIRS = "guild-a", "guild-b"
APPEAL_WORDS = {MINE: "words of the guild-a member", THEIRS: "private words of the guild-b member"}

#: Every route that changes state, for one community's case ``{n}`` appealed by ``{member}``.
STATE_CHANGING = (
    *(f"/cases/{{community}}/{{n}}/{action}" for action in ("reopen", "note", "mistaken", "assign", "take",
                                                            "conclude")),
    *(f"/appeals/{{community}}/{{n}}/{{member}}/{decision}" for decision in ("uphold", "reopen")),
)


@dataclass
class World:
    rt: Runtime
    cases: dict[str, int]
    threads: dict[str, ThreadRef]

    async def snapshot(self, community: str) -> tuple[Any, ...]:
        """Everything a state-changing route of ``community`` could change."""
        n, rt = self.cases[community], self.rt
        case = await rt.cases.get(community, n)
        return (case.actions, (await rt.member_actions.thread_state(self.threads[community])).status,
                (await rt.review.review(community, n)).state,
                [(a.member_id, a.status) for a in await rt.review.appeals_of(community, n)])


@pytest.fixture
async def world(redis_client) -> AsyncIterator[World]:
    rt = runtime_on(redis_client)
    cases, threads = {}, {}
    for community in (MINE, THEIRS):
        threads[community] = ThreadRef("discord", community, "c1", f"t-{community}")
        cases[community] = await end_thread(rt.member_actions, threads[community])
        filed = await rt.review.file_appeal(community, cases[community], ANN, APPEAL_WORDS[community])
        assert filed.appeal is not None
    accounts = Accounts(redis_client, SECRET.encode())
    await accounts.add("mod-a", PASSWORD, [MINE])
    yield World(rt, cases, threads)
    await rt.aclose()


async def _csrf(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', await (await client.get(path)).text())
    assert found, f"no CSRF token on {path}"
    return found.group(1)


async def signed_in(world: World, **settings: Any) -> TestClient:
    app = build_app(world.rt, DashboardSettings(session_secret=SECRET, cookie_secure=False, **settings))
    client = TestClient(TestServer(app))
    await client.start_server()
    headers = {"Origin": settings["public_url"]} if settings.get("public_url") else {}
    done = await client.post("/login", data={"name": "mod-a", "password": PASSWORD,
                                             "csrf": await _csrf(client, "/login")},
                             headers=headers, allow_redirects=False)
    assert done.status == 303
    return client


def routes(world: World, community: str) -> list[str]:
    return [r.format(community=community, n=world.cases[community], member=ANN.id) for r in STATE_CHANGING]


async def test_no_state_changing_route_reaches_a_community_the_moderator_does_not_moderate(world):
    client = await signed_in(world)
    try:
        token = await _csrf(client, "/appeals")
        before = await world.snapshot(THEIRS)
        for path in routes(world, THEIRS):
            forged = await client.post(path, data={"csrf": token, "note": "forged", "outcome": "upheld"},
                                       allow_redirects=False)
            assert forged.status == 404, path
        assert await world.snapshot(THEIRS) == before
        assert before[1] is ThreadStatus.ENDED and before[2] is ReviewState.UNREVIEWED
        assert await world.rt.notices.pop_notices("discord") == []  # nothing on its way to their member
        # the same requests in the moderator's own community are served (the token and routes are right)
        for path in routes(world, MINE):
            served = await client.post(path, data={"csrf": token, "note": "mine", "outcome": "upheld"},
                                       allow_redirects=False)
            assert served.status == 303, path
        assert await world.snapshot(MINE) != before
    finally:
        await client.close()


async def test_the_appeals_queue_shows_only_the_moderators_communities(world):
    client = await signed_in(world)
    try:
        page = await (await client.get("/appeals")).text()
        assert set(re.findall(r'class="appeal-row" data-community="([^"]+)"', page)) == {MINE}
        assert APPEAL_WORDS[MINE] in page and APPEAL_WORDS[THEIRS] not in page
    finally:
        await client.close()


@pytest.mark.parametrize("origin", [f"{PUBLIC}.evil.test", f"{PUBLIC}:8443", "http://dash.example.org",
                                    "https://evil.test", "null"])
async def test_a_post_from_any_other_origin_is_refused(world, origin):
    client = await signed_in(world, public_url=PUBLIC)
    try:
        path = f"/cases/{MINE}/{world.cases[MINE]}/note"
        token = await _csrf(client, f"/cases/{MINE}/{world.cases[MINE]}")
        before = await world.snapshot(MINE)
        refused = await client.post(path, data={"csrf": token, "note": "forged"}, headers={"Origin": origin},
                                    allow_redirects=False)
        assert refused.status == 403
        assert await world.snapshot(MINE) == before
        served = await client.post(path, data={"csrf": token, "note": "mine"}, headers={"Origin": PUBLIC},
                                   allow_redirects=False)
        assert served.status == 303 and await world.snapshot(MINE) != before
    finally:
        await client.close()
