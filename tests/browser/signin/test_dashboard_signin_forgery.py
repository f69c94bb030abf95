"""Forged requests against the sign-in and the settings pages, over HTTP with aiohttp's client: another
community's settings (read and write), a tampered or foreign OAuth state, a replayed code, a missing or
foreign CSRF token, an open redirect through the return address. All are refused and nothing changes in
Redis."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from tests.browser.signin.support import SignInDashboard

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
REFRESH = re.compile(r'http-equiv="refresh" content="0;url=([^"]*)"')


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def to_callback(http: aiohttp.ClientSession, signin: SignInDashboard, next_path: str | None = None) -> str:
    """Start a Discord sign-in and follow the stand-in's authorization page; the callback URL it sends to."""
    params = {"next": next_path} if next_path is not None else {}
    async with http.get(f"{signin.url}/login/discord", params=params, allow_redirects=False) as start:
        assert start.status == 303
        authorize = start.headers["Location"]
    async with http.get(authorize, allow_redirects=False) as approved:
        assert approved.status == 302
        return approved.headers["Location"]


async def finish(http: aiohttp.ClientSession, callback: str) -> tuple[int, str]:
    async with http.get(callback, allow_redirects=False) as response:
        return response.status, await response.text()


async def signed_in(signin: SignInDashboard, user: dict[str, Any]) -> aiohttp.ClientSession:
    signin.discord.oauth.signed_in = user
    http = browser()
    status, _ = await finish(http, await to_callback(http, signin))
    assert status == 200
    return http


async def csrf_of(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as response:
        assert response.status == 200
        match = CSRF.search(await response.text())
    assert match is not None
    return match.group(1)


async def sessions(signin: SignInDashboard) -> int:
    return len([k async for k in signin.client.scan_iter(match="tg:dash:session:*")])


def test_another_communitys_settings_cannot_be_read_or_written(signin: SignInDashboard) -> None:
    async def scenario() -> None:
        other = signin.discord.other_guild_id
        http = await signed_in(signin, signin.discord.ann)  # admin of the guild, a member of the other
        try:
            csrf = await csrf_of(http, f"{signin.url}/settings/{signin.guild}")
            before = await signin.settings_snapshot()
            for path in (f"/settings/{other}", f"/settings/{other}/export.toml"):
                async with http.get(signin.url + path) as response:
                    assert response.status == 404
            for path, form in ((f"/settings/{other}", {"threshold": "9", "crisis_resources": "x", "version": "0"}),
                               (f"/settings/{other}/restore/0", {"version": "0"}),
                               (f"/settings/{other}/channel", {"channel": "c1", "persona": "p", "version": "0"}),
                               (f"/settings/{other}/import", {"toml": f'[community."{other}"]\nthreshold = 9\n',
                                                              "version": "0"})):
                async with http.post(signin.url + path, data={**form, "csrf": csrf}) as response:
                    assert response.status == 404, path
            assert await signin.settings_snapshot() == before
            # nor can a forged form of her own community point its mod-log or a channel at the other's
            own = f"{signin.url}/settings/{signin.guild}"
            elsewhere = signin.discord.elsewhere_id
            for path, form in ((own, {"threshold": "3", "crisis_resources": "Call or text 988 now.",
                                      "mod_log_channel": elsewhere}),
                               (own, {"threshold": "3", "crisis_resources": "Call or text 988 now.",
                                      "allowed_channels": elsewhere}),
                               (f"{own}/channel", {"channel": elsewhere, "persona": "p"})):
                async with http.post(path, data={**form, "version": "0", "csrf": csrf}) as response:
                    assert response.status == 400, path
                    assert "Choose channels of this community" in await response.text()
            assert await signin.settings_snapshot() == before
        finally:
            await http.close()

    signin.call(scenario)


def test_tampered_foreign_and_replayed_states_and_codes_are_refused(signin: SignInDashboard) -> None:
    async def scenario() -> None:
        signin.discord.oauth.signed_in = signin.discord.ann
        before, count = await signin.settings_snapshot(), await sessions(signin)
        http, stranger = browser(), browser()
        try:
            await to_callback(stranger, signin)  # the stranger holds a sign-in cookie of its own
            callback = await to_callback(http, signin)
            tampered = re.sub(r"state=([^&]+)", lambda m: f"state={m.group(1)[:-2]}xx", callback)
            assert (await finish(http, tampered))[0] == 400
            assert (await finish(stranger, callback))[0] == 400  # another browser's sign-in: refused, and used up
            assert (await finish(http, callback))[0] == 400
            callback = await to_callback(http, signin)
            assert (await finish(http, callback))[0] == 200  # the genuine one
            count += 1
            assert (await finish(http, callback))[0] == 400  # the same state and code again
            code = re.search(r"code=([^&]+)", callback)
            assert code is not None
            fresh = await to_callback(http, signin)
            replayed = re.sub(r"code=([^&]+)", f"code={code.group(1)}", fresh)
            status, body = await finish(http, replayed)  # a fresh state with the used code: the platform refuses
            assert status == 502 and "did not work" in body
            assert "token" in signin.discord.oauth.refused
            assert await sessions(signin) == count
            assert await signin.settings_snapshot() == before
        finally:
            await http.close()
            await stranger.close()

    signin.call(scenario)


def test_missing_or_foreign_csrf_tokens_are_refused(signin: SignInDashboard) -> None:
    async def scenario() -> None:
        ann = await signed_in(signin, signin.discord.ann)
        other_ann = await signed_in(signin, signin.discord.ann)
        try:
            page = f"{signin.url}/settings/{signin.guild}"
            foreign = await csrf_of(other_ann, page)
            before = await signin.settings_snapshot()
            form = {"threshold": "9", "crisis_resources": "Call 988.", "version": "0"}
            for extra in ({}, {"csrf": foreign}, {"csrf": ""}, {"csrf": "0" * 64}):
                async with ann.post(page, data={**form, **extra}) as response:
                    assert response.status == 403
            own = await csrf_of(ann, page)
            async with ann.post(page, data={**form, "csrf": own}, headers={"Origin": "https://evil.example"}) as r:
                assert r.status == 403
            assert await signin.settings_snapshot() == before
        finally:
            await ann.close()
            await other_ann.close()

    signin.call(scenario)


@pytest.mark.parametrize("next_path", ["https://evil.example/x", "//evil.example/x", "/\\evil.example",
                                       "javascript:alert(1)", "/%0d%0aLocation:%20https://evil.example",
                                       "/\r\nLocation: https://evil.example", "https:/\\evil.example"])
def test_the_return_address_never_leaves_the_dashboard(signin: SignInDashboard, next_path: str) -> None:
    async def scenario() -> str:
        signin.discord.oauth.signed_in = signin.discord.ann
        http = browser()
        try:
            status, body = await finish(http, await to_callback(http, signin, next_path))
        finally:
            await http.close()
        assert status == 200
        match = REFRESH.search(body)
        assert match is not None
        return match.group(1)

    target = signin.call(scenario)
    # a path of this dashboard that merely contains the text stays (it is not a redirect elsewhere)
    assert target in ("/cases", "/%0d%0aLocation:%20https://evil.example")


def test_a_local_return_address_is_kept(signin: SignInDashboard) -> None:
    async def scenario() -> str:
        signin.discord.oauth.signed_in = signin.discord.ann
        http = browser()
        try:
            _, body = await finish(http, await to_callback(http, signin, f"/settings/{signin.guild}"))
        finally:
            await http.close()
        match = REFRESH.search(body)
        assert match is not None
        return match.group(1)

    assert signin.call(scenario) == f"/settings/{signin.guild}"


def test_password_sign_in_is_off_when_a_platform_is_configured(signin: SignInDashboard) -> None:
    async def scenario() -> None:
        await signin.runtime_accounts().add("operator", "a long enough password", [], admin=True)
        http = browser()
        try:
            async with http.get(f"{signin.url}/login") as page:  # no password form, but a valid token anyway
                assert page.status == 200 and 'name="password"' not in await page.text()
            nonce = next(c.value for c in http.cookie_jar if c.key == "tg_login")
            csrf = signin.runtime_accounts().csrf_token(nonce, "login")
            async with http.post(f"{signin.url}/login", data={"csrf": csrf, "name": "operator",
                                                              "password": "a long enough password"},
                                 allow_redirects=False) as response:
                assert response.status == 403
            assert "tg_session" not in {c.key for c in http.cookie_jar}
        finally:
            await http.close()

    signin.call(scenario)
