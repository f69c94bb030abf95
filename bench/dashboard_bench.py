"""Dashboard pages against the number of cases, on a real redis-server: ``GET /cases`` (ended threads
awaiting review), a filtered ``GET /cases`` (one category, every review state), one case page, and
``threadguard cases list`` (a process of its own), at 500, 5,000 and 50,000 cases of one community (each
with a 13-entry transcript). Prints the median time and the Redis commands of each, checks each page shows
the right rows, and the growth from the smallest count to the largest (the aim: at most 1.5x).

    python bench/dashboard_bench.py [--counts 500,5000,50000] [--requests 15]

Uses REDIS_URL when set (never flushes it: the run uses a community of its own), otherwise starts a
private redis-server on a free loopback port and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.dashboard.app import build_app
from adapters.dashboard.auth import Accounts
from bench.engine_bench import on_redis
from bot.bootstrap import Runtime, build_runtime
from bot.types import CATEGORIES, Case, Entry, EntryKind, Participant, iso
from config.communities import Communities
from config.dashboard import DashboardSettings
from config.settings import AnthropicSettings, RedisSettings, Settings

SECRET = secrets.token_urlsafe(48)
START = 1_790_000_000
ROW = re.compile(r'class="case-link" href="/cases/[^/"]+/(\d+)"')
FILTERED_CATEGORY = "hate"


def category_of(i: int) -> str:
    return FILTERED_CATEGORY if i % 7 == 0 else CATEGORIES[i % 5]


def make_case(community: str, i: int) -> Case:
    member = Participant(f"m{i % 900}", f"member {i % 900}")
    transcript = [Entry(EntryKind.USER if t % 2 == 0 else EntryKind.ASSISTANT, f"turn {t} of case {i}: " + "w" * 160,
                        author_id=member.id, author_name=member.name, at=START + i * 30 + t) for t in range(13)]
    return Case(case_id=0, community=community, platform="discord", thread=f"discord:{community}:c:t{i}",
                channel="c", action="end", reason="persistent_abuse" if i % 4 else "user_requested",
                category=category_of(i), summary=f"bench case {i}", redirect_count=2, warned=True,
                ended_at=iso(START + i * 30), ended_by="bot", participants=[member], transcript=transcript,
                case_ref=f"bench-{i}")


async def fill(rt: Runtime, community: str, start: int, stop: int, numbers: dict[int, int]) -> None:
    """File cases ``start``..``stop - 1`` (case ``i`` ends after case ``i - 1``), noting each one's number."""
    for first in range(start, stop, 64):
        batch = range(first, min(stop, first + 64))
        filed = await asyncio.gather(*(rt.store.cases.file_action(make_case(community, i)) for i in batch))
        assert all(c.case_id > 0 for c in filed)
        numbers.update({i: c.case_id for i, c in zip(batch, filed, strict=True)})


@dataclass
class Pages:
    """The pages measured at one case count, each checking it shows the right cases."""

    http: aiohttp.ClientSession
    base: str
    community: str
    env: dict[str, str]
    newest: list[int]
    filtered_newest: list[int]
    middle: int
    middle_number: int

    async def rows(self, path: str) -> list[int]:
        async with self.http.get(self.base + path) as resp:
            assert resp.status == 200, (path, resp.status)
            return [int(n) for n in ROW.findall(await resp.text())]

    async def case_list(self) -> None:
        assert await self.rows("/cases") == self.newest[:25]

    async def filtered(self) -> None:
        assert await self.rows(f"/cases?category={FILTERED_CATEGORY}&review=all") == self.filtered_newest[:25]

    async def case_page(self) -> None:
        async with self.http.get(f"{self.base}/cases/{self.community}/{self.middle_number}") as resp:
            body = await resp.text()
        assert resp.status == 200
        assert f"bench case {self.middle}<" in body
        assert f"turn 12 of case {self.middle}:" in body

    async def cli_list(self) -> None:
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "adapters", "cases", "list", "--community", self.community,
                             "--limit", "25"], env=self.env, cwd=ROOT, capture_output=True, text=True, check=True)
        listed = [int(line.split()[0].lstrip("#")) for line in out.stdout.splitlines() if line.startswith("#")]
        assert listed == self.newest[:25], out.stdout[-500:]


@dataclass
class Served:
    """The dashboard app on a free loopback port, with a signed-in moderator of one community."""

    base: str
    token: str
    runner: web.AppRunner
    accounts: Accounts
    name: str

    @classmethod
    async def start(cls, rt: Runtime, community: str) -> Served:
        accounts = Accounts(rt.redis, SECRET.encode())
        name = f"bench-{secrets.token_hex(3)}"
        await accounts.add(name, "bench password 123", [community])
        moderator = await accounts.get(name)
        assert moderator is not None
        token = await accounts.open_session(moderator)
        runner = web.AppRunner(build_app(rt, DashboardSettings(session_secret=SECRET, cookie_secure=False)),
                               access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return cls(f"http://127.0.0.1:{port}", token, runner, accounts, name)

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.accounts.remove(self.name)


async def counters(client: Any) -> tuple[int, int]:
    """Commands Redis ran and bytes it sent so far."""
    stats = await client.info("stats")
    return int(stats["total_commands_processed"]), int(stats["total_net_output_bytes"])


async def measure(client: Any, requests: int, call: Callable[[], Awaitable[None]]) -> tuple[float, int, int]:
    """Median seconds of ``call`` over ``requests`` runs, and the Redis commands and bytes read of one run."""
    await call()  # warm (and the check of its rows)
    (c0, b0), (c1, b1) = await counters(client), await counters(client)
    await call()
    c2, b2 = await counters(client)
    per_call, read = c2 - c1 - (c1 - c0), b2 - b1 - (b1 - b0)  # less one INFO, measured alike
    timings = []
    for _ in range(requests):
        t0 = time.perf_counter()
        await call()
        timings.append(time.perf_counter() - t0)
    return statistics.median(timings), per_call, read


async def bench(url: str, counts: list[int], requests: int) -> None:
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    rt = build_runtime(Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None)),
                       redis=client, communities=Communities())
    community = f"bench-{secrets.token_hex(4)}"
    served = await Served.start(rt, community)
    base, token = served.base, served.token
    env = {**os.environ, "REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    results: dict[str, list[tuple[int, float, int]]] = {}
    filed = 0
    numbers: dict[int, int] = {}
    async with aiohttp.ClientSession(cookies={"tg_session": token}) as http:
        for n in counts:
            started = time.perf_counter()
            await fill(rt, community, filed, n, numbers)
            filed = n
            print(f"{n} cases filed ({time.perf_counter() - started:.1f} s for this step)", flush=True)
            pages = Pages(http, base, community, env, [numbers[i] for i in range(n - 1, -1, -1)],
                          [numbers[i] for i in range(n - 1, -1, -1) if category_of(i) == FILTERED_CATEGORY],
                          n // 2, numbers[n // 2])
            for label, call, times in (("GET /cases", pages.case_list, requests),
                                       (f"GET /cases?category={FILTERED_CATEGORY}", pages.filtered, requests),
                                       ("GET /cases/<community>/<n>", pages.case_page, requests),
                                       ("threadguard cases list", pages.cli_list, 7)):
                median, per_call, read = await measure(client, times, call)
                results.setdefault(label, []).append((n, median, read))
                print(f"  {label:<34} {median * 1000:7.1f} ms median, {per_call:5d} Redis commands, "
                      f"{read:8,d} bytes read", flush=True)
    print()
    for label, found in results.items():
        (n0, t0, r0), (n1, t1, r1) = found[0], found[-1]
        print(f"{label:<34} {n0} -> {n1} cases: {t0 * 1000:.1f} -> {t1 * 1000:.1f} ms ({t1 / t0:.2f}x), "
              f"bytes read {r1 / max(r0, 1):.2f}x")
    await served.stop()
    await rt.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--counts", default="500,5000,50000")
    parser.add_argument("--requests", type=int, default=15)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    on_redis(lambda url: bench(url, counts, args.requests))


if __name__ == "__main__":
    main()
