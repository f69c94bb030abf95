"""Worker memory over many turns: does it stay flat, and if not, what grows?

Runs 40,000 turns over 2,000 threads (20 each; 64 members' clients at once, each taking the next thread
and writing its turns in order) through the composition root's engine and turn pipeline, on a private
redis-server, with an instant model and what a platform adapter does with a turn (a delivery sink: a
stream per turn, the outcome carried out inside the turn). Prints the process's resident memory after the
warm-up and at the end, the growth per turn over the measured part and, with ``--trace``, the allocation
sites that changed most (tracemalloc), then checks that every turn was answered and that the growth stays
under the bound.

    python bench/memory_bench.py [--threads 2000] [--turns 20] [--concurrency 64] [--bound 16]

``--bound``: bytes per turn the measured growth must stay under (resident memory, or with ``--trace`` the
traced Python allocations, which also name the sites that changed).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.bootstrap import build_runtime
from bot.model import ModelRequest, ModelResponse, TextBlock, Usage
from bot.store.inbox_entry import InboxEntry
from bot.types import Author, Case, IncomingMessage, Outcome, ReplyKind, TextSink, ThreadNotice, ThreadRef
from config.communities import Communities, CommunityConfig
from config.settings import AnthropicSettings, RedisSettings, Settings
from tests.support.redis_servers import RedisServer

PAGE = os.sysconf("SC_PAGE_SIZE")


class InstantModel:
    label = "instant"
    offline = True

    async def respond(self, request: ModelRequest, sink: TextSink | None = None) -> ModelResponse:
        if sink is not None:
            await sink("A short answer, ")
            await sink("streamed in two parts.")
        return ModelResponse([TextBlock("A short answer, streamed in two parts.")], "end_turn",
                             Usage(input_tokens=120, output_tokens=8, cache_read_input_tokens=900, calls=1))

    async def aclose(self) -> None:
        return None


class Counter:
    """What a platform adapter does with a turn, without the platform: the pipeline's delivery sink (a
    stream per turn, the outcome carried out inside the turn), every answer counted; ``delivered`` tells a
    member's client that its message was answered."""

    def __init__(self) -> None:
        self.answered = 0
        self._waiting: dict[str, asyncio.Future[None]] = {}

    def delivered(self, entry_id: str) -> asyncio.Future[None]:
        future = self._waiting[entry_id] = asyncio.get_running_loop().create_future()
        return future

    def stream(self, entry: InboxEntry) -> TextSink:
        parts: list[str] = []

        async def sink(delta: str) -> None:
            parts.append(delta)

        return sink

    async def deliver(self, entry: InboxEntry, outcome: Outcome, stream: TextSink | None) -> None:
        if outcome.streamed or any(r.kind is ReplyKind.ANSWER for r in outcome.replies):
            self.answered += 1
        waiting = self._waiting.pop(entry.id, None)
        if waiting is not None:
            waiting.set_result(None)

    async def notice(self, notice: ThreadNotice) -> None:
        return None

    async def case(self, case: Case) -> None:
        return None


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


async def run_turns(runtime: Any, counter: Counter, first: int, count: int, turns: int, concurrency: int) -> None:
    """``concurrency`` members' clients, each taking the next thread and writing its turns in order (no task
    per thread on the bench's side, so what stays behind is the worker's)."""
    members = runtime.member_actions
    threads = iter(range(first, first + count))

    async def member() -> None:
        for i in threads:
            ref = ThreadRef("console", "bench", "ch", f"t{i}")
            for n in range(turns):
                msg = IncomingMessage(ref, Author(f"u{i}", "Member"), f"question {n} in thread {i}",
                                      message_id=f"m{i}-{n}")
                answered = counter.delivered(msg.dedupe_id)
                ticket = await members.accept(msg, wait=False)
                assert ticket.accepted, ticket.outcome
                await answered

    await asyncio.gather(*(member() for _ in range(concurrency)))
    await runtime.pipeline.idle()


async def main(args: argparse.Namespace) -> int:
    with RedisServer() as server:
        settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=server.url))
        runtime = build_runtime(settings, model=InstantModel(), communities=Communities(CommunityConfig()))
        counter = Counter()
        runtime.pipeline.register_sink("console", counter)
        try:
            warm = max(args.concurrency, args.threads // 10)
            started = time.perf_counter()
            if args.trace:  # from the start: what the warm-up keeps is traced too, so a refill is no growth
                tracemalloc.start(5)
            await run_turns(runtime, counter, 0, warm, args.turns, args.concurrency)
            gc.collect()
            before_snap = tracemalloc.take_snapshot() if args.trace else None
            before = rss()
            await run_turns(runtime, counter, warm, args.threads - warm, args.turns, args.concurrency)
            gc.collect()
            after = rss()
            after_snap = tracemalloc.take_snapshot() if args.trace else None
            elapsed = time.perf_counter() - started
        finally:
            await runtime.aclose()
    total = args.threads * args.turns
    measured = (args.threads - warm) * args.turns
    growth = (after - before) / measured
    print(f"memory bench: {total} turns on {args.threads} threads in {elapsed:.0f} s; {counter.answered} answered"
          f"{' (allocations traced)' if args.trace else ''}")
    print(f"  resident after warm-up ({warm * args.turns} turns): {before / 2**20:.1f} MiB; "
          f"after all: {after / 2**20:.1f} MiB; growth {growth:.1f} bytes/turn over the {measured} measured turns")
    if before_snap is not None and after_snap is not None:
        growth = sum(s.size_diff for s in after_snap.compare_to(before_snap, "filename")) / measured
        print(f"  Python allocations: {growth:+.1f} bytes/turn; the largest changes by site:")
        for stat in after_snap.compare_to(before_snap, "lineno")[:6]:
            frame = stat.traceback[0]
            where = f"{frame.filename}:{frame.lineno}"
            print(f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {where}")
    ok = counter.answered == total and growth < args.bound
    print(f"  {'OK' if ok else 'FAILED'}: every turn answered; growth {growth:.1f} bytes/turn (bound {args.bound:.0f})")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2000)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--bound", type=float, default=16.0)
    parser.add_argument("--trace", action="store_true", help="trace Python allocations (slower; shows sites)")
    sys.exit(asyncio.run(main(parser.parse_args())))
