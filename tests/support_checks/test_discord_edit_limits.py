"""Checks of the Discord stand-in's edit limits (not of threadguard): per channel, Discord's headers and 429
body over plain HTTP, off unless turned on, and discord.py's own client obeying them without a 429."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import discord
import discord.http
import pytest
import pytest_asyncio

from tests.support.discord_standin import EDIT_BUCKET, DiscordStandin

pytestmark = [pytest.mark.standin, pytest.mark.timeout(30)]


@pytest_asyncio.fixture
async def standin() -> AsyncIterator[DiscordStandin]:
    server = DiscordStandin()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _bot_message(standin: DiscordStandin, channel_id: str) -> str:
    return str((await standin.post(channel_id, "first", standin.bot))["id"])


async def _edit(http: aiohttp.ClientSession, standin: DiscordStandin, channel_id: str, message_id: str,
                text: str) -> tuple[int, dict[str, str], dict[str, object]]:
    url = f"{standin.api_base_url}/channels/{channel_id}/messages/{message_id}"
    async with http.patch(url, json={"content": text}, headers={"Authorization": "Bot t"}) as response:
        return response.status, dict(response.headers), await response.json()


async def test_edits_past_the_limit_answer_429_as_discord_does(standin: DiscordStandin) -> None:
    standin.limit_edits(3, 0.5)
    general, other = standin.general_id, standin.other_channel_id
    here, there = await _bot_message(standin, general), await _bot_message(standin, other)
    async with aiohttp.ClientSession() as http:
        answers = [await _edit(http, standin, general, here, f"v{i}") for i in range(4)]
        shown = standin.messages[here]["content"]
        elsewhere = await _edit(http, standin, other, there, "v0")
        await asyncio.sleep(0.55)
        reopened = await _edit(http, standin, general, here, "after")

    assert [a[0] for a in answers] == [200, 200, 200, 429]
    assert [a[1]["X-RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert all(a[1]["X-RateLimit-Bucket"] == EDIT_BUCKET and a[1]["X-RateLimit-Limit"] == "3" for a in answers)
    _, headers, body = answers[3]
    assert set(body) == {"message", "retry_after", "global"} and body["global"] is False
    assert 0 < float(body["retry_after"]) <= 0.5  # type: ignore[arg-type]
    assert headers["Retry-After"] == "1" and headers["X-RateLimit-Scope"] == "user" and "Via" in headers
    assert 0 < float(headers["X-RateLimit-Reset-After"]) <= 0.5
    assert shown == "v2"  # the refused edit changed nothing
    assert elsewhere[0] == 200 and elsewhere[1]["X-RateLimit-Remaining"] == "2"  # a bucket per channel
    assert reopened[0] == 200 and reopened[1]["X-RateLimit-Remaining"] == "2"  # a new window
    assert len(standin.find("PATCH", rf"/channels/{general}/messages/\d+", status=429)) == 1


async def test_edits_are_unlimited_and_carry_no_headers_unless_turned_on(standin: DiscordStandin) -> None:
    here = await _bot_message(standin, standin.general_id)
    async with aiohttp.ClientSession() as http:
        answers = [await _edit(http, standin, standin.general_id, here, f"v{i}") for i in range(8)]
    assert {a[0] for a in answers} == {200}
    assert not any(name.startswith("X-RateLimit") for a in answers for name in a[1])


async def test_discord_py_waits_for_the_window_and_never_meets_a_429(standin: DiscordStandin) -> None:
    standin.limit_edits(3, 0.4)
    here = await _bot_message(standin, standin.general_id)
    saved = discord.http.Route.BASE
    discord.http.Route.BASE = standin.api_base_url
    client = discord.Client(intents=discord.Intents.none())
    try:
        await client.login("test-token")
        message = client.get_partial_messageable(int(standin.general_id)).get_partial_message(int(here))
        began = time.monotonic()
        for i in range(7):
            await message.edit(content=f"v{i}")
        took = time.monotonic() - began
    finally:
        await client.close()
        discord.http.Route.BASE = saved
    edits = standin.find("PATCH", rf"/channels/{standin.general_id}/messages/{here}")
    assert [c.status for c in edits] == [200] * 7  # the headers told discord.py when to wait
    assert standin.messages[here]["content"] == "v6"
    assert took >= 0.75  # seven edits at three a window: two windows waited out
