"""History windows with many active threads in one process, on a real redis-server: N threads take turns
round-robin (every thread active the whole time), each turn a 3,000-character message and a 3,000-character
answer from an instant model. Prints the Redis bytes read per turn (after a warm-up of each thread's first
turns), the window cache's hits, and the memory the cache holds (its estimate, and a measurement of one
window with tracemalloc), for 20 threads and for 300, and checks 300 stays within 1.5x of 20.

    python bench/window_bench.py [--threads 20,300] [--rounds 8] [--warmup 4]

Uses REDIS_URL when set (never flushes it: each run uses threads of its own), otherwise starts a private
redis-server on a free loopback port and stops it afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import SecretStr

from bench.engine_bench import InstantModel, _answered, _info_sum, _long, on_redis
from bot.bootstrap import build_runtime
from bot.store.window import WindowCache
from bot.types import Author, Entry, IncomingMessage, ThreadRef
from config.communities import Communities, CommunityConfig
from config.settings import EngineSettings, RedisSettings, Settings, StoreSettings


async def run(url: str, threads: int, rounds: int, warmup: int) -> tuple[float, float]:
    """Bytes read per turn after the warm-up and engine time per turn (median), for ``threads`` threads."""
    model = InstantModel()
    settings = Settings(redis=RedisSettings(url=SecretStr(url)), store=StoreSettings(),
                        engine=EngineSettings())
    rt = build_runtime(settings, model=model, communities=Communities(CommunityConfig()))
    members, client, windows = rt.member_actions, rt.redis, rt.windows
    prefix = f"w{time.time_ns()}"
    author = Author("u1", "bench")
    refs = [ThreadRef("console", prefix, "bench", f"t{i}") for i in range(threads)]
    per_turn: list[float] = []
    times: list[float] = []
    for r in range(warmup + rounds):
        before = await _info_sum(client, "stats", "total_net_output_bytes")
        hits_before = windows.hits
        started = time.perf_counter()
        for i, thread in enumerate(refs):  # round-robin: every thread has a turn before any has its next
            msg = IncomingMessage(thread, author, _long(f"message {r} of thread {i}"), message_id=f"{prefix}-{i}-{r}")
            t0 = time.perf_counter()
            outcome = await members.handle_message(msg)
            times.append(time.perf_counter() - t0)
            assert _answered(outcome), outcome
        elapsed = time.perf_counter() - started
        read = await _info_sum(client, "stats", "total_net_output_bytes") - before
        if r >= warmup:
            per_turn.append(read / threads)
            assert windows.hits - hits_before == threads, f"round {r}: {windows.hits - hits_before} hits"
        print(f"  {threads} threads, round {r + 1}: {read / threads:9,.0f} bytes read per turn, "
              f"{windows.hits - hits_before:4d} window hits, {elapsed / threads * 1000:6.2f} ms per turn", flush=True)
    held = windows.bytes
    print(f"  {threads} threads: window cache holds {len(windows)} windows, {held / 2**20:.2f} MiB estimated "
          f"({held / max(1, len(windows)) / 1024:.1f} KiB a window); model calls {model.calls}")
    await rt.aclose()
    return statistics.median(per_turn), statistics.median(times[threads * warmup:])


def measured_window_bytes(windows: WindowCache, sample: list[str]) -> tuple[int, int]:
    """One window decoded under tracemalloc: its measured memory against the cache's estimate."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    entries = tuple(Entry.from_json(raw) for raw in sample)
    measured = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    probe = WindowCache(10)
    probe.window("probe", None, "[" + ",".join(sample[:-1]) + "]", sample[-1], win=0, base=0, length=len(sample),
                 gen="0")
    del entries
    return measured, probe.bytes


async def bench(url: str, counts: list[int], rounds: int, warmup: int) -> None:
    figures = {}
    for threads in counts:
        figures[threads] = await run(url, threads, rounds, warmup)
    sample = [Entry.from_dict({"kind": "user" if i % 2 == 0 else "assistant", "text": _long(f"entry {i}"),
                               "author_id": "u1", "author_name": "bench", "in_history": True}).to_json()
              for i in range(8)]
    measured, estimated = measured_window_bytes(WindowCache(10), sample)
    print(f"one window of 8 entries of 3,000 characters: {measured:,} bytes measured (tracemalloc), "
          f"{estimated:,} estimated by the cache")
    low, high = min(counts), max(counts)
    (b_low, t_low), (b_high, t_high) = figures[low], figures[high]
    print(f"bytes read per turn: {low} threads {b_low:,.0f}, {high} threads {b_high:,.0f} ({b_high / b_low:.2f}x); "
          f"engine time per turn {t_low * 1000:.2f} -> {t_high * 1000:.2f} ms ({t_high / t_low:.2f}x)")
    assert b_high / b_low <= 1.5, f"bytes read per turn grew {b_high / b_low:.2f}x from {low} to {high} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", default="20,300")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=4)
    args = parser.parse_args()
    on_redis(lambda url: bench(url, [int(n) for n in args.threads.split(",")], args.rounds, args.warmup))


if __name__ == "__main__":
    main()
