"""Prompt cost of long threads, as billed, relative to resending the history uncached.

Drives whole threads through the composition root, the real anthropic SDK and the Messages API stand-in
(3,200-character messages, 1,000-character answers), then bills every request payload the way the API
bills prompt caching (tests/support/prompt_cache.py: tokens = characters / 4, cache writes 1.25x, cache
reads 0.1x, by where the cache_control breakpoints are). Output tokens are the same either way and left
out. Also prints, for the turns past the history budget, how many requests repeated the previous
request's cached prefix byte for byte.

    python bench/cost_bench.py [--turns 20 60]

Targets: 20 turns <= 0.30, 60 turns <= 0.35.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.bootstrap import build_runtime
from bot.types import Author, IncomingMessage, ReplyKind, ThreadRef
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
from tests.support.anthropic_standin import AnthropicStandin, reply
from tests.support.prompt_cache import Bill, shares_cached_prefix, text_of

TARGETS = {20: 0.30, 60: 0.35}
async def run_thread(turns: int, seed: int) -> tuple[Bill, int, list[dict]]:
    standin = await AnthropicStandin().start()
    answers = itertools.count(seed * 1000)
    standin.responder = lambda body: reply(text_of(1000, next(answers)))
    settings = Settings(anthropic=AnthropicSettings(api_key="bench-key", base_url=standin.base_url, max_retries=0),
                        redis=RedisSettings(url=None), engine=EngineSettings())
    runtime = build_runtime(settings)
    thread = ThreadRef("discord", "bench", "c1", f"cost-{turns}")
    answered = 0
    try:
        for n in range(turns):
            msg = IncomingMessage(thread, Author("u1", "member"), text_of(3200, seed + n), message_id=f"m{n}")
            outcome = await runtime.member_actions.handle_message(msg)
            answered += any(r.kind is ReplyKind.ANSWER for r in outcome.replies)
        bodies = [r.body for r in standin.requests]
    finally:
        await runtime.aclose()
        await standin.stop()
    bill = Bill()
    for body in bodies:
        bill.add(body)
    return bill, answered, bodies


def past_budget_hits(bodies: list[dict]) -> tuple[int, int]:
    """(requests that repeated the previous request's cached prefix, requests compared), from the first
    request whose history no longer starts with the thread's first message (the history budget was hit)."""
    first = json.dumps(bodies[0]["messages"][0]["content"][0]["text"])
    trimmed = next((i for i, b in enumerate(bodies) if first not in json.dumps(b["messages"][0])), None)
    if trimmed is None:
        return 0, 0
    pairs = list(itertools.pairwise(bodies[trimmed:]))
    return sum(shares_cached_prefix(a, b) for a, b in pairs), len(pairs)


async def main(turn_counts: list[int]) -> int:
    failed = False
    print("billed-equivalent prompt cost relative to resending the history uncached")
    for turns in turn_counts:
        bill, answered, bodies = await run_thread(turns, seed=turns)
        if answered != turns:
            print(f"  {turns} turns: only {answered} of {turns} turns were answered: the run is not valid")
            return 2
        target = TARGETS.get(turns)
        met = "met" if target is not None and bill.ratio <= target else "NOT met"
        verdict = "" if target is None else f"  (target <= {target:.2f}: {met})"
        failed |= target is not None and bill.ratio > target
        hits, compared = past_budget_hits(bodies)
        print(f"  {turns:>3} turns: {bill.ratio:.2f}{verdict}; {bill.requests} requests, "
              f"{bill.uncached / 1000:.0f}k prompt tokens uncached, {bill.read / 1000:.0f}k read from cache, "
              f"{bill.written / 1000:.0f}k written")
        if compared:
            print(f"             past the history budget: {hits} of {compared} requests repeated the previous "
                  f"cached prefix byte for byte")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[20, 60])
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.turns)))
