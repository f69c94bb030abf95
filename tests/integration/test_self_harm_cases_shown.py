"""Ended threads filed under self-harm (older versions allowed it) are marked for moderators: on the
dashboard's case page and list (the real aiohttp app on a real redis-server), in the CLI's case text and
in the Discord and Slack mod-log posts."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.dashboard.app import build_app
from adapters.dashboard.auth import Accounts
from adapters.discord.modlog import case_embed
from adapters.slack.modlog import case_blocks
from adapters.slack.translate import Identity
from bot.bootstrap import build_runtime
from bot.casefile import render_case_text
from bot.types import SELF_HARM_MARKER, Case, Participant
from config.communities import Communities, CommunityConfig
from config.dashboard import DashboardSettings
from config.settings import AnthropicSettings, RedisSettings, Settings

SECRET = "self-harm-marker-session-secret-0123456789abcdef"
PASSWORD = "correct horse battery"


def ended(category: str, n: int) -> Case:
    return Case(0, "guild-m", "discord", f"discord:guild-m:c1:t{n}", "c1", action="end", reason="persistent_abuse",
                category=category, summary="Ended.", ended_at="2026-11-30T10:00:00+00:00", ended_by="model",
                participants=[Participant("u1", "member")], case_ref=f"old:{n}")


@pytest.fixture
async def dashboard(redis_client):
    rt = build_runtime(Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None)),
                       redis=redis_client, communities=Communities(CommunityConfig()))
    flagged = await rt.store.cases.file_action(ended("self_harm", 1))
    plain = await rt.store.cases.file_action(ended("harassment", 2))
    await Accounts(redis_client, SECRET.encode()).add("root", PASSWORD, [], admin=True)
    app = build_app(rt, DashboardSettings(session_secret=SECRET, cookie_secure=False, page_size=50))
    async with TestClient(TestServer(app)) as client:
        html = await (await client.get("/login")).text()
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
        assert token
        signed = await client.post("/login", data={"name": "root", "password": PASSWORD, "csrf": token.group(1)},
                                   allow_redirects=False)
        assert signed.status == 303
        yield client, flagged, plain
    await rt.aclose()


async def test_the_case_page_and_the_list_mark_self_harm_ends(dashboard):
    client, flagged, plain = dashboard
    page = await (await client.get(f"/cases/guild-m/{flagged.case_id}")).text()
    assert 'id="self-harm-marker"' in page and SELF_HARM_MARKER in page
    other = await (await client.get(f"/cases/guild-m/{plain.case_id}")).text()
    assert 'id="self-harm-marker"' not in other
    listing = await (await client.get("/cases", params={"review": "all"})).text()
    rows = re.findall(r'<tr class="case-row[^"]*"[^>]*data-case="(\d+)".*?</tr>', listing, re.S)
    assert sorted(map(int, rows)) == sorted([flagged.case_id, plain.case_id])
    marked = re.findall(r'data-case="(\d+)"(?:(?!</tr>).)*tag-self-harm', listing, re.S)
    assert marked == [str(flagged.case_id)]


def test_the_cli_and_the_mod_log_posts_mark_self_harm_ends():
    flagged, plain = ended("self_harm", 1), ended("harassment", 2)
    assert SELF_HARM_MARKER in render_case_text(flagged)
    assert SELF_HARM_MARKER not in render_case_text(plain)
    assert any(f.value == SELF_HARM_MARKER for f in case_embed(flagged).fields)
    assert not any(f.value == SELF_HARM_MARKER for f in case_embed(plain).fields)
    identity = Identity("UBOT", "BBOT", "T1", "https://example.slack.com/")
    assert SELF_HARM_MARKER in str(case_blocks(flagged, identity))
    assert SELF_HARM_MARKER not in str(case_blocks(plain, identity))
