"""Checks of the Slack stand-in's OAuth and per-workspace token behaviour with the real slack_sdk client
(test infrastructure, not threadguard)."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.slack_standin import CLIENT_ID, CLIENT_SECRET, SlackStandin

pytestmark = [pytest.mark.standin, pytest.mark.timeout(30)]


@pytest_asyncio.fixture
async def standin() -> AsyncIterator[SlackStandin]:
    s = SlackStandin(token_rotation=True, token_lifetime=600)
    await s.start()
    s.add_workspace("TA", channels=("CA",))
    s.add_workspace("TB", channels=("CB",))
    try:
        yield s
    finally:
        await s.stop()


async def _code(standin: SlackStandin, team: str) -> dict[str, str]:
    standin.approve(team, f"U{team}")
    url = f"{standin.authorization_url}?client_id={CLIENT_ID}&state=s1&redirect_uri=http://x/cb"
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    assert location.startswith("http://x/cb?")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


async def _error(call: object) -> str:
    with pytest.raises(SlackApiError) as caught:
        await call  # type: ignore[misc]
    return str(caught.value.response["error"])


async def test_codes_tokens_refresh_revocation_and_foreign_channels(standin: SlackStandin) -> None:
    client = AsyncWebClient(base_url=standin.base_url)
    query = await _code(standin, "TA")
    assert query["state"] == "s1"
    grant = await client.oauth_v2_access(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=query["code"])
    assert grant["team"]["id"] == "TA" and grant["authed_user"]["id"] == "UTA"
    assert grant["expires_in"] == 600 and grant["refresh_token"].startswith("xoxe-1-")
    assert await _error(client.oauth_v2_access(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                               code=query["code"])) == "invalid_code"  # used once
    assert await _error(client.oauth_v2_access(client_id=CLIENT_ID, client_secret="wrong",
                                               code="x")) == "invalid_client"
    token = grant["access_token"]
    assert (await client.auth_test(token=token))["team_id"] == "TA"
    await client.chat_postMessage(token=token, channel="CA", text="hi")
    assert await _error(client.chat_postMessage(token=token, channel="CB", text="hi")) == "channel_not_found"

    renewed = await client.oauth_v2_access(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                           grant_type="refresh_token", refresh_token=grant["refresh_token"])
    assert renewed["access_token"] != token and standin.refreshes == {"TA": 1}
    assert await _error(client.oauth_v2_access(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                               grant_type="refresh_token",
                                               refresh_token=grant["refresh_token"])) == "invalid_refresh_token"
    standin.expire(token)
    assert await _error(client.chat_postMessage(token=token, channel="CA", text="hi")) == "token_expired"
    standin.revoke("TA")
    assert await _error(client.chat_postMessage(token=renewed["access_token"], channel="CA",
                                                text="hi")) == "token_revoked"
    assert await _error(client.auth_test(token="xoxb-never-issued")) == "invalid_auth"
    assert [c.error for c in standin.calls if c.method == "chat.postMessage"] == [
        None, "channel_not_found", "token_expired", "token_revoked"]
