"""The usage panel and the case page's usage, in headless Chromium, on token numbers that the real
anthropic SDK got from the Messages API stand-in."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis.asyncio
from aiohttp import web

from adapters.dashboard.app import build_app
from adapters.dashboard.auth import Accounts
from bot.bootstrap import build_runtime
from bot.types import Author, IncomingMessage, ThreadRef
from bot.usage import Prices, TokenTotals, day_of
from config.communities import Communities, CommunityConfig, CommunityLimits
from config.dashboard import DashboardSettings
from config.settings import AnthropicSettings, EngineSettings, OpsSettings, RedisSettings, Settings
from tests.browser.conftest import PASSWORD, SECRET, LiveDashboard, sign_in
from tests.support.anthropic_standin import AnthropicStandin, reply, tool_use

pytestmark = pytest.mark.browser
KINDS = {"input": "input_tokens", "output": "output_tokens", "cache_write": "cache_creation_input_tokens",
         "cache_read": "cache_read_input_tokens"}
PRICES = Prices(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30)


def totals_of(usages: list[dict[str, int]], turns: int) -> TokenTotals:
    return TokenTotals(**{k: sum(u.get(v, 0) for u in usages) for k, v in KINDS.items()}, calls=len(usages),
                       turns=turns)


class UsageDashboard(LiveDashboard):
    """The dashboard on a runtime whose model is Claude through the SDK, pointed at the stand-in."""

    async def _start(self) -> None:
        client = redis.asyncio.Redis.from_url(self.redis_url, decode_responses=True)
        await client.flushall()
        self.api = await AnthropicStandin().start()
        settings = Settings(anthropic=AnthropicSettings(api_key="k", base_url=self.api.base_url, max_retries=0),
                            redis=RedisSettings(url=None), engine=EngineSettings(), ops=OpsSettings())
        limited = CommunityConfig(threshold=2, limits=CommunityLimits(daily_spend_usd=1.0, tokens_per_day=100_000))
        self.runtime = build_runtime(settings, redis=client, communities=Communities(
            CommunityConfig(threshold=2), {"guild-a": limited}))
        await self._seed_usage()
        accounts = Accounts(client, SECRET.encode())
        await accounts.add("mod-a", PASSWORD, ["guild-a"])
        await accounts.add("mod-b", PASSWORD, ["guild-b"])
        dash = DashboardSettings(session_secret=SECRET, cookie_secure=False)
        self.runner = web.AppRunner(build_app(self.runtime, dash), shutdown_timeout=1, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def _turn(self, thread: ThreadRef, text: str) -> object:
        n = next(self._ids)
        return await self.members.handle_message(IncomingMessage(thread, Author("u1", "member"), text, f"m{n}"))

    async def _seed_usage(self) -> None:
        api = self.api
        a = ThreadRef("discord", "guild-a", "c1", "t-a")
        for text in ("hello", "tell me about rivers", "and lakes?"):
            api.enqueue(reply(f"Here is something about {text}. " * 12))
            await self._turn(a, text)
        self.guild_a = totals_of(api.reported_usage, turns=3)
        seen = len(api.reported_usage)
        b = ThreadRef("slack", "guild-b", "C1", "1.0")
        redirect = tool_use("record_redirection", {"category": "harassment", "note": "declined"})
        for _ in range(2):
            api.enqueue(reply("No.", redirect), reply(" Let's talk about something else."))
            await self._turn(b, "insult them")
        api.enqueue(reply(tool_use("end_conversation", {"reason": "persistent_abuse", "category": "harassment",
                                                        "summary": "Persisted."})))
        outcome = await self._turn(b, "do it")
        self.case_b = outcome.case.case_id  # type: ignore[attr-defined]
        self.guild_b = totals_of(api.reported_usage[seen:], turns=3)


@pytest.fixture(scope="module")
def usage_live(redis_server) -> Iterator[UsageDashboard]:
    if not redis_server.running:
        redis_server.start()
    dashboard = UsageDashboard(redis_server.url)
    dashboard.start()
    try:
        yield dashboard
    finally:
        try:
            dashboard.call(dashboard.api.stop)
        finally:
            dashboard.stop()


def cells(page, community: str, row: str) -> dict[str, int]:
    table = page.locator(f"table.usage[data-community='{community}']")
    target = table.locator(row)
    return {name: int(target.locator(f".{name.replace('_', '-')}").inner_text())
            for name in ("turns", "calls", "input", "output", "cache_write", "cache_read")}


def test_the_usage_panel_shows_the_reported_tokens_of_the_moderators_community_only(usage_live, page):
    sign_in(page, usage_live, "mod-a")
    page.click("nav >> text=Usage")
    page.wait_for_url("**/usage")
    expected = usage_live.guild_a.as_dict()
    today = day_of(time.time())
    assert cells(page, "guild-a", f"tr.usage-day[data-day='{today}']") == expected
    assert cells(page, "guild-a", "tr.usage-total") == expected
    cost = page.locator("table.usage[data-community='guild-a'] tr.usage-total .cost").inner_text()
    assert cost == f"${PRICES.cost(usage_live.guild_a):.4f}"
    assert page.locator("table.usage[data-community='guild-b']").count() == 0
    assert "guild-b" not in page.content()


def test_another_communitys_moderator_sees_its_usage_and_the_case_usage(usage_live, page):
    sign_in(page, usage_live, "mod-b")
    page.goto(f"{usage_live.url}/usage?days=7")
    assert cells(page, "guild-b", "tr.usage-total") == usage_live.guild_b.as_dict()
    assert page.locator("table.usage[data-community='guild-a']").count() == 0
    page.goto(f"{usage_live.url}/cases/guild-b/{usage_live.case_b}")
    text = page.locator("#case-usage").inner_text()
    b = usage_live.guild_b
    assert f"{b.turns} turns, {b.calls} model calls" in text
    assert f"input {b.input} · output {b.output} · cache write {b.cache_write} · cache read {b.cache_read}" in text


def test_the_usage_panel_shows_each_limit_beside_todays_use(usage_live, page):
    sign_in(page, usage_live, "mod-a")
    page.goto(f"{usage_live.url}/usage")
    rows = page.locator("table.limits[data-community='guild-a'] tr.limit")
    shown = [[rows.nth(i).locator(f".{c}").inner_text() for c in ("name", "limit", "used")]
             for i in range(rows.count())]
    spent = PRICES.cost(usage_live.guild_a)
    tokens = usage_live.guild_a.prompt_tokens + usage_live.guild_a.output
    assert shown == [
        ["daily spend ceiling", "US$1.00", f"US${spent:.4f} ({100 * spent:.0f}%)"],
        ["tokens per member per day", "100000", f"most used: {tokens} (u1); 1 member(s) today"],
        ["exempt", "moderators", "threads flagged at risk are never limited"],
    ]
