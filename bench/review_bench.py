"""Review-desk benchmark on a real redis-server: appeal filing (latency, and exactly one appeal per
member per case under concurrent double clicks), review-state reads, and the dashboard's review list
(``GET /cases``, server-rendered) with N ended-thread cases.

    python bench/review_bench.py [--cases 500] [--appeals 200]

Uses REDIS_URL when set (never flushes it: the run uses a community of its own), otherwise starts a
private redis-server on a free loopback port and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine_bench import on_redis, pct
from bot.bootstrap import build_runtime
from bot.review import AppealResult
from bot.types import Author, IncomingMessage, ThreadRef
from config.communities import Communities
from config.settings import AnthropicSettings, RedisSettings, Settings

SECRET = secrets.token_urlsafe(48)


async def bench(url: str, n_cases: int, n_appeals: int) -> None:
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    rt = build_runtime(Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None)),
                       redis=client, communities=Communities())
    community = f"bench-{secrets.token_hex(4)}"
    members = [Author(f"m{i}", f"member{i}") for i in range(n_cases)]

    async def end_one(i: int) -> int:
        thread = ThreadRef("discord", community, "c", f"t{i}")
        await rt.member_actions.handle_message(IncomingMessage(thread, members[i], "hello there", f"t{i}-1"))
        return int((await rt.member_actions.end_by_user(thread, members[i])).case.case_id)

    started = time.perf_counter()
    case_ids: list[int] = []
    for start in range(0, n_cases, 32):
        case_ids += await asyncio.gather(*(end_one(i) for i in range(start, min(n_cases, start + 32))))
    print(f"filed {len(case_ids)} ended-thread cases in {time.perf_counter() - started:.1f} s")

    latencies: list[float] = []
    gate = asyncio.Semaphore(16)  # 16 members double-clicking at once (32 calls in flight)

    async def appeal(i: int) -> list[AppealResult]:
        async with gate:
            return await double_click(i)

    async def double_click(i: int) -> list[AppealResult]:
        async def once() -> AppealResult:
            t0 = time.perf_counter()
            answer = await rt.review.file_appeal(community, case_ids[i], members[i], "it was a mistake")
            latencies.append(time.perf_counter() - t0)
            return answer.result

        return list(await asyncio.gather(once(), once()))  # a double click

    results = [r for pair in await asyncio.gather(*(appeal(i) for i in range(n_appeals))) for r in pair]
    filed = sum(r is AppealResult.FILED for r in results)
    queued = len(await rt.review.open_appeals([community]))
    assert filed == n_appeals == queued, (filed, queued)
    print(f"appeals: {len(results)} attempts as double clicks on {n_appeals} cases -> {filed} filed, "
          f"{queued} queued; file_appeal p50 {pct(latencies, 0.5) * 1000:.2f} ms, "
          f"p99 {pct(latencies, 0.99) * 1000:.2f} ms")

    t0 = time.perf_counter()
    reviews = await rt.review.reviews(community, case_ids)
    assert len(reviews) == len(case_ids)
    print(f"review states of {len(case_ids)} cases in one pipeline: {(time.perf_counter() - t0) * 1000:.1f} ms")

    from bench.dashboard_bench import Served

    served = await Served.start(rt, community)
    timings = []
    async with aiohttp.ClientSession(cookies={"tg_session": served.token}) as http:
        for _ in range(10):
            t0 = time.perf_counter()
            async with http.get(f"{served.base}/cases") as resp:
                body = await resp.text()
            timings.append(time.perf_counter() - t0)
            assert resp.status == 200, resp.status
            assert f"<b>{n_cases}</b> unreviewed" in body
    print(f"GET /cases with {n_cases} ended threads and {n_appeals} open appeals: median "
          f"{statistics.median(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms (10 requests)")
    await served.stop()
    await rt.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--appeals", type=int, default=200)
    args = parser.parse_args()
    on_redis(lambda url: bench(url, args.cases, args.appeals))


if __name__ == "__main__":
    main()
