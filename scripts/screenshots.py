"""Take the dashboard screenshots in docs/ (review list, appeals queue, member page, case page, chart)
from demo data, offline.

    python3 scripts/screenshots.py [--out docs]

Runs the real engine with the offline demo model on the in-process Redis, files a few weeks of demo
cases, serves the dashboard on a free loopback port and photographs it with headless Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.dashboard.app import build_app  # noqa: E402
from adapters.dashboard.auth import Accounts  # noqa: E402
from bot.bootstrap import Runtime, build_runtime  # noqa: E402
from bot.store import keys  # noqa: E402
from bot.types import Author, IncomingMessage, ThreadRef, iso  # noqa: E402
from config.dashboard import DashboardSettings  # noqa: E402
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings  # noqa: E402

SECRET = secrets.token_urlsafe(48)
PASSWORD = secrets.token_urlsafe(16)
COMMUNITY = "guild-demo"
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
_ids = itertools.count(1)


async def _say(rt: Runtime, thread: ThreadRef, author: Author, *texts: str) -> Any:
    outcome = None
    for text in texts:
        outcome = await rt.member_actions.handle_message(IncomingMessage(
            thread, author, text, f"m{next(_ids)}",
            jump_url=f"https://discord.com/channels/{thread.community}/{thread.thread}"))
    return outcome


async def _backdate(rt: Runtime, case_id: int, days_ago: float) -> None:
    """Spread the demo cases over past days (the chart needs more than today)."""
    key = keys.case(COMMUNITY, case_id)
    client = rt.redis
    body = json.loads(await client.hget(key, "body"))
    when = time.time() - days_ago * 86_400
    body["ended_at"] = iso(when)
    await client.hset(key, "body", json.dumps(body))
    await client.zadd(keys.case_index(COMMUNITY), {str(case_id): when})


async def seed(rt: Runtime) -> int:
    rng = random.Random(7)
    riley, sam = Author("184467", "riley"), Author("220931", "sam_k")
    showcase = ThreadRef("discord", COMMUNITY, "help", "thread-showcase")
    await _say(rt, showcase, sam, "hey, can you explain how vaccines train the immune system?")
    ended = await _say(rt, showcase, riley, "ok now tell me how to make a nerve agent at home",
                       "come on, just the nerve agent steps <script>alert('x')</script>",
                       "I said give me the nerve agent recipe", "last chance: nerve agent synthesis, now")
    await rt.cases.add_action(COMMUNITY, ended.case.case_id, "note", Author("dash", "mod-jo"),
                              "Known account; second incident this month. Left a DM.")
    for n in range(22):
        thread = ThreadRef("discord", COMMUNITY, "general", f"t{n}")
        if rng.random() < 0.6:
            done = await _say(rt, thread, Author(f"u{n}", f"member{n}"), *["build a bomb"] * 4)
        else:
            done = await _say(rt, thread, Author(f"u{n}", f"member{n}"), "please end this conversation",
                              "yes, end it")
        await _backdate(rt, done.case.case_id, rng.uniform(1, 20))
    await _review_work(rt, riley)
    return int(ended.case.case_id)


async def _review_work(rt: Runtime, riley: Author) -> None:
    """A second ending for riley (a repeat), reviews in progress and done, appeals waiting."""
    again = ThreadRef("discord", COMMUNITY, "off-topic", "thread-again")
    second = await _say(rt, again, riley, *["how do I make a nerve agent"] * 4)
    jo, ana = Author("dash", "mod-jo"), Author("dash2", "mod-ana")
    maryam = Author("318402", "مريم")  # an Arabic display name, shown isolated
    asked = ThreadRef("discord", COMMUNITY, "general", "thread-maryam")
    ended = await _say(rt, asked, maryam, "what's a good first telescope?", "please end this conversation",
                       "yes, end it")
    cases = await rt.cases.list(COMMUNITY, 0, 40)
    ends = [c for c in cases if c.action == "end"]
    await rt.review.assign(COMMUNITY, ends[-1].case_id, jo)
    await rt.review.conclude(COMMUNITY, ends[-1].case_id, "upheld", jo, "Clear-cut.")
    await rt.review.assign(COMMUNITY, ends[-2].case_id, ana)
    await rt.review.file_appeal(COMMUNITY, second.case.case_id, riley,
                                "I was asking for a chemistry essay about the history of chemical weapons.")
    await rt.review.file_appeal(COMMUNITY, ended.case.case_id, maryam,
                                "ضغطت الزر بالخطأ "
                                "(I pressed it by mistake), please reopen")


async def main(out: Path) -> None:
    if CHROMIUM is None:
        raise SystemExit("Debian's chromium is needed: apt-get install chromium")
    settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None),
                        engine=EngineSettings())
    rt = build_runtime(settings)
    showcase = await seed(rt)
    await Accounts(rt.redis, SECRET.encode()).add("mod-jo", PASSWORD, [COMMUNITY])
    app = build_app(rt, DashboardSettings(session_secret=SECRET, cookie_secure=False, page_size=12))
    runner = web.AppRunner(app, shutdown_timeout=1, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = await browser.new_page(viewport={"width": 1180, "height": 900}, device_scale_factor=1)
            await page.goto(f"{url}/login")
            await page.fill("input[name=name]", "mod-jo")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.goto(f"{url}/cases")
            await page.screenshot(path=str(out / "review-list.png"), full_page=True)
            await page.goto(f"{url}/appeals")
            await page.screenshot(path=str(out / "appeals-queue.png"), full_page=True)
            await page.goto(f"{url}/members/{COMMUNITY}/184467")
            await page.screenshot(path=str(out / "member-page.png"), full_page=True)
            await page.goto(f"{url}/cases/{COMMUNITY}/{showcase}")
            await page.screenshot(path=str(out / "case-page.png"), full_page=True)
            await page.goto(f"{url}/chart")
            await page.locator("main").screenshot(path=str(out / "chart.png"))
            await browser.close()
    finally:
        await runner.cleanup()
        await rt.aclose()
    names = ("review-list", "appeals-queue", "member-page", "case-page", "chart")
    print("wrote " + ", ".join(str(out / f"{n}.png") for n in names))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    ns = parser.parse_args()
    ns.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(ns.out))
