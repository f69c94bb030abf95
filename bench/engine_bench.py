"""Engine benchmark on a real redis-server with an instant stand-in model.

Prints turns per second, engine overhead per turn (p50, p99), Redis round trips per ordinary turn and per
message to a frozen thread, model calls for frozen threads, Redis memory per thread, and the ratio of the
p50 turn overhead to a Redis PING round trip measured in the same run.

    python bench/engine_bench.py [--threads 200] [--turns 10] [--concurrency 32]

Uses REDIS_URL when set (never flushes it: it uses a key prefix of its own run), otherwise starts a
private redis-server on a free loopback port and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.bootstrap import build_runtime
from bot.model import ModelRequest, ModelResponse, TextBlock, ToolUseBlock
from bot.policy import ToolCall
from bot.types import Author, IncomingMessage, ThreadRef
from config.communities import Communities, CommunityConfig
from config.settings import RedisSettings, Settings


class InstantModel:
    """Answers at once; ``end`` in the text makes it end the conversation (user request)."""

    label = "instant"
    offline = True

    def __init__(self) -> None:
        self.calls = 0

    async def respond(self, request: ModelRequest, sink: object = None) -> ModelResponse:
        self.calls += 1
        last = request.messages[-1].blocks[0]
        if isinstance(last, TextBlock) and last.text == "end":
            call = ToolCall("toolu_end", "end_conversation",
                            {"reason": "user_requested", "category": "other", "summary": "bench"})
            return ModelResponse([ToolUseBlock(call)], "tool_use")
        return ModelResponse([TextBlock("Sure, here is a short answer to your question.")], "end_turn")

    async def aclose(self) -> None:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_private_redis() -> tuple[str, subprocess.Popen[bytes], str]:
    workdir = tempfile.mkdtemp(prefix="tg-bench-")
    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL)
    return f"redis://127.0.0.1:{port}/0", proc, workdir


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(url: str, threads: int, turns: int, concurrency: int) -> None:
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    for _ in range(100):
        try:
            await client.ping()
            break
        except redis.exceptions.ConnectionError:
            await asyncio.sleep(0.05)
    model = InstantModel()
    rt = build_runtime(Settings(redis=RedisSettings(url=None)), model=model, redis=client,
                       communities=Communities(CommunityConfig(frozen_reminder_cooldown=0)))
    engine, store = rt.engine, rt.store
    run = f"b{int(time.time())}"
    author = Author("u1", "bench")
    mem_before = int((await client.info("memory"))["used_memory"])

    # 1. sequential turns: per-turn overhead and round trips
    overheads: list[float] = []
    trips: list[int] = []
    seq = 0
    for t in range(threads):
        thread = ThreadRef("console", run, "bench", f"t{t}")
        for _ in range(turns):
            seq += 1
            msg = IncomingMessage(thread, author, f"question number {seq} about something", message_id=f"m{seq}")
            before = store.round_trips
            start = time.perf_counter()
            await engine.handle_message(msg)
            overheads.append(time.perf_counter() - start)
            trips.append(store.round_trips - before)
    mem_after = int((await client.info("memory"))["used_memory"])

    # 2. PING round trips in the same run
    pings = []
    for _ in range(2000):
        start = time.perf_counter()
        await client.ping()
        pings.append(time.perf_counter() - start)

    # 3. throughput with concurrent threads
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            thread = ThreadRef("console", run, "tp", f"t{i % (threads or 1)}")
            await engine.handle_message(IncomingMessage(thread, author, f"q {i}", message_id=f"tp{i}"))

    n_tp = threads * turns
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n_tp)))
    tp_elapsed = time.perf_counter() - start

    # 4. frozen threads: one round trip, no model call
    frozen = ThreadRef("console", run, "bench", "frozen")
    await engine.handle_message(IncomingMessage(frozen, author, "end", message_id="f-end"))
    calls_before, frozen_trips = model.calls, []
    for i in range(500):
        before = store.round_trips
        outcome = await engine.handle_message(IncomingMessage(frozen, author, "hello?", message_id=f"f{i}"))
        assert outcome.frozen
        frozen_trips.append(store.round_trips - before)
    frozen_model_calls = model.calls - calls_before

    p50, p99 = pct(overheads, 0.50), pct(overheads, 0.99)
    ping50 = pct(pings, 0.50)
    print(f"threadguard engine benchmark ({threads} threads x {turns} turns, instant model, {url.split('@')[-1]})")
    print(f"  turns per second, sequential:            {len(overheads) / sum(overheads):10.0f}")
    print(f"  turns per second, {concurrency:>3} concurrent:         {n_tp / tp_elapsed:10.0f}")
    print(f"  engine overhead per turn p50:            {p50 * 1e3:10.3f} ms")
    print(f"  engine overhead per turn p99:            {p99 * 1e3:10.3f} ms")
    print(f"  Redis round trips per ordinary turn:     {statistics.mean(trips):10.2f} (max {max(trips)})")
    print(f"  Redis round trips per frozen message:    {statistics.mean(frozen_trips):10.2f} "
          f"(max {max(frozen_trips)})")
    print(f"  model calls for 500 frozen messages:     {frozen_model_calls:10d}")
    print(f"  Redis memory per thread ({turns} turns):     {(mem_after - mem_before) / threads / 1024:10.1f} KiB")
    print(f"  Redis PING round trip p50:               {ping50 * 1e3:10.3f} ms")
    print(f"  p50 turn overhead / p50 PING:            {p50 / ping50:10.1f} x")
    await rt.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL")
    proc = workdir = None
    if not url:
        url, proc, workdir = start_private_redis()
    try:
        asyncio.run(bench(url, args.threads, args.turns, args.concurrency))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
            shutil.rmtree(workdir or "", ignore_errors=True)


if __name__ == "__main__":
    main()
