"""Sign-in throttling over HTTP against the real dashboard app and a real Redis: per account and client,
``X-Forwarded-For`` honoured only from configured proxies, never a lockout of everyone."""

from __future__ import annotations

import re

import aiohttp
import pytest
from aiohttp import web

from adapters.dashboard.app import build_app
from adapters.dashboard.auth import Accounts, client_address
from bot.bootstrap import build_runtime
from config.communities import Communities
from config.dashboard import DashboardSettings
from config.settings import AnthropicSettings, RedisSettings, Settings

SECRET = "throttle-test-session-secret-0123456789abcdef"
PASSWORD = "correct horse battery"


@pytest.fixture
async def dashboard_url(redis_client, request):
    trusted = getattr(request, "param", ("127.0.0.1",))
    runtime = build_runtime(Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None)),
                            redis=redis_client, communities=Communities())
    accounts = Accounts(redis_client, SECRET.encode())
    await accounts.add("mod-a", PASSWORD, ["guild-a"])
    await accounts.add("mod-b", PASSWORD, ["guild-a"])
    settings = DashboardSettings(session_secret=SECRET, cookie_secure=False, trusted_proxies=trusted)
    runner = web.AppRunner(build_app(runtime, settings), shutdown_timeout=1, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def sign_in(url: str, name: str, password: str, forwarded_for: str | None = None) -> int:
    """One browser's sign-in through the proxy: the form, its CSRF token and cookie, then the POST."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{url}/login", headers=headers) as form:
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', await form.text())
        assert csrf is not None
        async with http.post(f"{url}/login", data={"csrf": csrf[1], "name": name, "password": password},
                             headers=headers, allow_redirects=False) as answer:
            return answer.status


async def test_wrong_passwords_behind_a_proxy_do_not_lock_out_another_moderator(dashboard_url):
    attacker, colleague = "203.0.113.5", "198.51.100.7"
    for _ in range(30):
        assert await sign_in(dashboard_url, "mod-a", "wrong password!", f"{attacker}") == 401
    # the second moderator behind the same proxy signs in
    assert await sign_in(dashboard_url, "mod-b", PASSWORD, colleague) == 303
    # and so does the account's owner from their own machine; the guessing client stays throttled
    assert await sign_in(dashboard_url, "mod-a", PASSWORD, colleague) == 303
    assert await sign_in(dashboard_url, "mod-a", PASSWORD, attacker) == 401


@pytest.mark.parametrize("dashboard_url", [()], indirect=True)
async def test_a_forged_forwarded_for_from_an_untrusted_client_is_ignored(dashboard_url):
    for n in range(10):  # a new made-up address each time: it must not buy fresh attempts
        assert await sign_in(dashboard_url, "mod-a", "wrong password!", f"10.9.8.{n}") == 401
    assert await sign_in(dashboard_url, "mod-a", PASSWORD, "10.9.8.200") == 401
    # throttled for this account from this client only: another account from the same client still works
    assert await sign_in(dashboard_url, "mod-b", PASSWORD) == 303


def test_client_address_takes_the_nearest_untrusted_hop_only_from_trusted_proxies():
    trusted = ("127.0.0.1", "10.0.0.0/8")
    assert client_address("127.0.0.1", "198.51.100.7", trusted) == "198.51.100.7"
    assert client_address("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.2.3", trusted) == "198.51.100.7"
    assert client_address("203.0.113.9", "198.51.100.7", trusted) == "203.0.113.9"  # not a proxy of ours
    assert client_address("127.0.0.1", "not-an-ip", trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", None, trusted) == "127.0.0.1"
