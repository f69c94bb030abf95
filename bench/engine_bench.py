"""Engine benchmark on a real redis-server (or Redis Cluster) with an instant stand-in model.

Prints turns per second, engine overhead per turn (p50, p99), Redis round trips per ordinary turn
(sequential: requests sent together, to other slots of a cluster, count once) and requests, round trips
per message to a frozen thread, model calls for frozen threads, Redis memory per thread, and the ratio of
the p50 turn overhead to a Redis PING round trip measured in the same run. Then one long thread (1,500
turns of 3,000-character messages and answers): engine time and Redis bytes read per turn at turn 10 and
at turn 1,500, whose ratio must stay under 2 (the turn reads the history window, never the whole log).
Last, limits off and on interleaved in one run (``--pairs``): a turn in a community without limits, then
one in a community with every limit set and none reached, each ``--pairs`` times, a PING before each pair;
p50 and p99 overhead of each, their ratio, and round trips per turn; every turn must be answered.

    python bench/engine_bench.py [--threads 200] [--turns 10] [--concurrency 32] [--long-turns 1500]
    python bench/engine_bench.py --cluster        # a private 3-node Redis Cluster
    python bench/engine_bench.py --only-pairs --pairs 3000   # only limits off against on

The Redis client is built by the composition root from settings, exactly as the product builds it.
Uses REDIS_URL (and REDIS_CLUSTER) when set (never flushes it: it uses a key prefix of its own run),
otherwise starts a private redis-server (or cluster) on free loopback ports and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import RedisCluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import SecretStr

from bot.bootstrap import build_runtime
from bot.model import ModelRequest, ModelResponse, TextBlock, ToolUseBlock, Usage
from bot.policy import ToolCall
from bot.types import Author, IncomingMessage, Outcome, ReplyKind, ThreadRef
from config.communities import Communities, CommunityConfig, CommunityLimits
from config.settings import RedisSettings, Settings

LONG_TEXT = 3000


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
        if isinstance(last, TextBlock) and len(last.text) >= LONG_TEXT:
            return ModelResponse([TextBlock(_long(f"answer {self.calls}"))], "end_turn")
        return ModelResponse([TextBlock("Sure, here is a short answer to your question.")], "end_turn")


    async def aclose(self) -> None:
        return None


def _answered(outcome: Outcome) -> bool:
    return bool(outcome.replies) and outcome.replies[0].kind is ReplyKind.ANSWER


def _long(head: str) -> str:
    filler = " lorem ipsum dolor sit amet" * (LONG_TEXT // 27 + 1)
    return (head + filler)[:LONG_TEXT]


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


def on_redis(run: Callable[[str], Awaitable[None]]) -> None:
    """``run(url)`` on REDIS_URL when set, otherwise on a private redis-server stopped afterwards."""
    url = os.environ.get("REDIS_URL")
    proc = workdir = None
    if not url:
        url, proc, workdir = start_private_redis()
        time.sleep(0.3)
    try:
        asyncio.run(run(url))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
            shutil.rmtree(workdir or "", ignore_errors=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _info_sum(client: Any, section: str, field: str) -> int:
    """A numeric INFO field summed over every primary (one server: just its own)."""
    if isinstance(client, RedisCluster):
        per_node = await client.info(section, target_nodes=RedisCluster.PRIMARIES)
        return sum(int(info[field]) for info in per_node.values())
    return int((await client.info(section))[field])


async def _wait_ready(client: Any) -> None:
    for _ in range(200):
        try:
            await client.ping()
            return
        except redis.exceptions.RedisError:
            await asyncio.sleep(0.05)
    raise SystemExit("Redis did not answer")


#: ``--limits``: every limit set, none reached: each turn checks and counts them.
LIMITS = CommunityLimits(messages_per_minute=10_000, burst=10_000, tokens_per_day=1_000_000_000,
                         daily_spend_usd=1_000_000)


async def bench(url: str, cluster: bool, threads: int, turns: int, concurrency: int, long_turns: int,
                limits: bool = False) -> None:
    model = InstantModel()
    settings = Settings(redis=RedisSettings(url=SecretStr(url), cluster=cluster))
    config = CommunityConfig(frozen_reminder_cooldown=0, **({"limits": LIMITS} if limits else {}))
    rt = build_runtime(settings, model=model, communities=Communities(config))
    members, store, client = rt.member_actions, rt.store, rt.redis
    await _wait_ready(client)
    run = f"b{int(time.time())}"
    author = Author("u1", "bench")
    mem_before = await _info_sum(client, "memory", "used_memory")

    # 1. sequential turns: per-turn overhead and round trips
    overheads: list[float] = []
    trips: list[int] = []
    requests: list[int] = []
    seq = 0
    for t in range(threads):
        thread = ThreadRef("console", run, "bench", f"t{t}")
        for _ in range(turns):
            seq += 1
            msg = IncomingMessage(thread, author, f"question number {seq} about something", message_id=f"m{seq}")
            before, sent = store.health.sequential, store.health.round_trips
            start = time.perf_counter()
            outcome = await members.handle_message(msg)
            overheads.append(time.perf_counter() - start)
            trips.append(store.health.sequential - before)
            requests.append(store.health.round_trips - sent)
            assert _answered(outcome), outcome
    mem_after = await _info_sum(client, "memory", "used_memory")

    # 2. PING round trips in the same run
    pings = []
    for _ in range(2000):
        start = time.perf_counter()
        await client.ping()
        pings.append(time.perf_counter() - start)

    # 3. throughput with concurrent threads
    sem = asyncio.Semaphore(concurrency)
    answered = 0

    async def one(i: int) -> None:
        nonlocal answered
        async with sem:
            thread = ThreadRef("console", run, "tp", f"t{i % (threads or 1)}")
            outcome = await members.handle_message(IncomingMessage(thread, author, f"q {i}", message_id=f"tp{i}"))
            answered += _answered(outcome)

    n_tp = threads * turns
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n_tp)))
    tp_elapsed = time.perf_counter() - start
    assert answered == n_tp, f"{answered} of {n_tp} concurrent turns answered"

    # 4. frozen threads: one round trip, no model call
    frozen = ThreadRef("console", run, "bench", "frozen")
    await members.handle_message(IncomingMessage(frozen, author, "end", message_id="f-end"))
    calls_before, frozen_trips = model.calls, []
    for i in range(500):
        before = store.health.sequential
        outcome = await members.handle_message(IncomingMessage(frozen, author, "hello?", message_id=f"f{i}"))
        assert outcome.frozen
        frozen_trips.append(store.health.sequential - before)
    frozen_model_calls = model.calls - calls_before

    # 5. one long thread: the turn reads the history window, never the whole log
    long_times, long_bytes = await long_thread(members, client, ThreadRef("console", run, "bench", "long"),
                                               author, long_turns)

    p50, p99 = pct(overheads, 0.50), pct(overheads, 0.99)
    ping50 = pct(pings, 0.50)
    where = url.split("@")[-1] + (" (cluster)" if cluster else "")
    print(f"threadguard engine benchmark ({threads} threads x {turns} turns, instant model, {where}, "
          f"limits {'on' if limits else 'off'})")
    print(f"  turns per second, sequential:            {len(overheads) / sum(overheads):10.0f}")
    print(f"  turns per second, {concurrency:>3} concurrent:         {n_tp / tp_elapsed:10.0f}")
    print(f"  engine overhead per turn p50:            {p50 * 1e3:10.3f} ms")
    print(f"  engine overhead per turn p99:            {p99 * 1e3:10.3f} ms")
    print(f"  Redis round trips per ordinary turn:     {statistics.mean(trips):10.2f} (max {max(trips)}; "
          f"requests sent together count once)")
    print(f"  Redis requests per ordinary turn:        {statistics.mean(requests):10.2f} (max {max(requests)})")
    print(f"  Redis round trips per frozen message:    {statistics.mean(frozen_trips):10.2f} "
          f"(max {max(frozen_trips)})")
    print(f"  model calls for 500 frozen messages:     {frozen_model_calls:10d}")
    print(f"  Redis memory per thread ({turns} turns):     {(mem_after - mem_before) / threads / 1024:10.1f} KiB")
    print(f"  Redis PING round trip p50:               {ping50 * 1e3:10.3f} ms")
    print(f"  p50 turn overhead / p50 PING:            {p50 / ping50:10.1f} x")
    report_long(long_times, long_bytes)
    await rt.aclose()


class BilledModel(InstantModel):
    """Answers at once and reports token usage as the real API does, so each commit counts it (and, with
    limits, the member's tokens and the community's spend)."""

    async def respond(self, request: ModelRequest, sink: object = None) -> ModelResponse:
        answer = await super().respond(request, sink)
        return ModelResponse(answer.blocks, answer.stop_reason,
                             Usage(input_tokens=120, output_tokens=8, cache_read_input_tokens=900, calls=1))


#: The three communities of the interleaved comparison: two without limits (A, and A' to see what "equal" is
#: on this machine) and one with every limit set (B).
ARMS = (("A", "offA"), ("A'", "offB"), ("B", "on"))
#: Every order of the three, used in turn, so each community is first, second and third after the PING alike.
ORDERS = ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (2, 1, 0), (1, 0, 2))


async def limits_on_off(url: str, cluster: bool, pairs: int, slowlog: bool = False) -> tuple[float, float]:
    """Turn overhead with limits off and on, interleaved in one run, so all see the same machine: one runtime,
    three communities (A and A' without limits, B with every limit set and none reached, so each of its
    turns checks and counts them all), a new thread every 10 turns in each; a PING, then one turn in each
    community (the order goes through all six in turn), ``pairs`` times, after a warm-up. Every turn must be
    answered. A' against A (A/A) is the noise floor: what "equal" looks like on this machine in this run; B
    against A (A/B) is what the limits cost. ``slowlog``: the time each script spent inside Redis (SLOWLOG,
    every command logged), by script and community. Returns the p50 ratios (A/A, A/B)."""
    model = BilledModel()
    settings = Settings(redis=RedisSettings(url=SecretStr(url), cluster=cluster))
    run = f"c{int(time.time() * 1000) % 10**9}"
    names = [f"{run}-{suffix}" for _, suffix in ARMS]
    communities = Communities(CommunityConfig(), {names[2]: CommunityConfig(limits=LIMITS)})
    rt = build_runtime(settings, model=model, communities=communities)
    members, health = rt.member_actions, rt.store.health
    await _wait_ready(rt.redis)
    author = Author("u1", "bench")
    times: list[list[float]] = [[], [], []]
    trips: list[list[int]] = [[], [], []]
    pings: list[float] = []
    counts = [0, 0, 0]
    answered = 0

    async def turn(arm: int, keep: bool) -> None:
        nonlocal answered
        n = counts[arm]
        counts[arm] += 1
        thread = ThreadRef("console", names[arm], "bench", f"t{n // 10}")
        before = health.sequential
        start = time.perf_counter()
        outcome = await members.handle_message(IncomingMessage(thread, author, f"question {n}", message_id=f"q{n}"))
        took = time.perf_counter() - start
        answered += _answered(outcome)
        if keep:
            times[arm].append(took)
            trips[arm].append(health.sequential - before)

    for n in range(60):  # connections opened, scripts loaded: not measured
        await turn(n % 3, False)
    if slowlog:
        await _slowlog_start(rt.redis, 3 * pairs * 60 + 10_000)  # the commands the scripts call are logged too
    for n in range(pairs):
        start = time.perf_counter()
        await rt.redis.ping()
        pings.append(time.perf_counter() - start)
        for arm in ORDERS[n % len(ORDERS)]:
            await turn(arm, True)
    inside = await _slowlog_read(rt.redis, names) if slowlog else {}
    await rt.aclose()
    assert answered == 60 + 3 * pairs, f"{answered} of {60 + 3 * pairs} turns answered"
    ping50 = pct(pings, 0.5)
    print(f"  limits off and on, interleaved ({pairs} turns each, usage reported, every turn answered; "
          f"load {_load()}):")
    for arm, (label, _) in enumerate(ARMS):
        p50, p99 = pct(times[arm], 0.5), pct(times[arm], 0.99)
        print(f"    {label:2} limits {'on ' if arm == 2 else 'off'}: overhead per turn p50 {p50 * 1e3:.3f} ms, "
              f"p99 {p99 * 1e3:.3f} ms, {p50 / ping50:.1f}x a PING ({ping50 * 1e3:.3f} ms); round trips per turn "
              f"{statistics.mean(trips[arm]):.2f}")
    base = pct(times[0], 0.5)
    same, cost = pct(times[1], 0.5) / base, pct(times[2], 0.5) / base
    print(f"    p50 A'/A (off / off, the noise floor): {same:.3f}   p50 B/A (on / off): {cost:.3f}")
    for script, by_arm in sorted(inside.items()):
        cells = "  ".join(f"{label} {statistics.median(by_arm[arm]):5.1f} us (n={len(by_arm[arm])})"
                          for arm, (label, _) in enumerate(ARMS) if by_arm.get(arm))
        print(f"    inside Redis, median per call, {script:12} {cells}")
    return same, cost


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


async def _nodes(client: Any) -> list[Any]:
    """One client per primary (one server: the client itself)."""
    if isinstance(client, RedisCluster):
        return [client.get_redis_connection(node) for node in client.get_primaries()]
    return [client]


async def _slowlog_start(client: Any, length: int) -> None:
    """Every command logged from now on, with its time inside Redis (a script's time includes logging each
    command it calls: what logging costs is in every figure, more in a script that calls more)."""
    for node in await _nodes(client):
        await node.config_set("slowlog-log-slower-than", 0)
        await node.config_set("slowlog-max-len", length)
        await node.slowlog_reset()


async def _slowlog_read(client: Any, names: list[str]) -> dict[str, dict[int, list[int]]]:
    """The logged scripts' times (µs), by script and by community (the index in ``names``); logging off."""
    from bot.store import usage as usage_scripts
    from bot.store.scripts import inbox as inbox_scripts
    from bot.store.scripts import limits as limit_scripts
    from bot.store.scripts import turns as turn_scripts

    known = {hashlib.sha1(lua.encode()).hexdigest(): name for name, lua in (
        ("INGEST", inbox_scripts.INGEST), ("COMMIT_TURN", turn_scripts.COMMIT_TURN),
        ("LIMIT_CHECK", limit_scripts.LIMIT_CHECK), ("DAY_SPEND", limit_scripts.DAY_SPEND),
        ("ADD", usage_scripts.ADD))}
    found: dict[str, dict[int, list[int]]] = {}
    for node in await _nodes(client):
        entries = await node.slowlog_get(10**6)
        await node.config_set("slowlog-log-slower-than", 10_000)
        await node.slowlog_reset()
        for entry in entries:
            command = entry["command"]
            text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
            words = text.split(" ", 2)
            if len(words) < 3 or words[0].upper() != "EVALSHA":
                continue
            script = known.get(words[1])
            if script is None:  # a lease renewed or the like: not a turn's
                continue
            arm = next((i for i, name in enumerate(names) if f"{name}:" in text or f"{name}}}" in text), None)
            if arm is not None:
                found.setdefault(script, {}).setdefault(arm, []).append(int(entry["duration"]))
    return found


async def long_thread(members: Any, client: Any, thread: ThreadRef, author: Author,
                      turns: int) -> tuple[list[float], list[int]]:
    """``turns`` turns of 3,000-character messages (and answers) in one thread; per turn, the engine time
    and the bytes Redis sent (INFO total_net_output_bytes, less one INFO reply measured alike)."""
    probe_a = await _info_sum(client, "stats", "total_net_output_bytes")
    probe_b = await _info_sum(client, "stats", "total_net_output_bytes")
    info_cost = probe_b - probe_a
    times: list[float] = []
    sent: list[int] = []
    for n in range(1, turns + 1):
        before = await _info_sum(client, "stats", "total_net_output_bytes")
        msg = IncomingMessage(thread, author, _long(f"long message {n}"), message_id=f"long{n}")
        start = time.perf_counter()
        outcome = await members.handle_message(msg)
        times.append(time.perf_counter() - start)
        after = await _info_sum(client, "stats", "total_net_output_bytes")
        sent.append(after - before - info_cost)
        assert _answered(outcome), f"turn {n} not answered: {outcome}"
    state = await members.thread_state(thread)
    assert state.ladder.turn == turns, f"{state.ladder.turn} of {turns} long-thread turns stored"
    return times, sent


def report_long(times: list[float], sent: list[int]) -> None:
    """Figures at turn 10 and at the last turn: the median of ten turns (10-19 and the last ten), since one
    turn's time is noisy on a shared machine; single-turn values follow in brackets."""
    n = len(times)
    if n < 30:
        return
    early, late = 10, n

    def median(values: list[Any], first: int) -> float:
        return float(statistics.median(values[first - 1:first + 9]))

    t_early, t_late = median(times, early), median(times, late - 9)
    b_early, b_late = median(sent, early), median(sent, late - 9)
    print(f"  long thread: {n} turns of {LONG_TEXT:,}-character messages and answers, every turn answered")
    print(f"    engine time per turn at turn {early:>5}:    {t_early * 1e3:10.3f} ms  (turn {early} alone: "
          f"{times[early - 1] * 1e3:.3f} ms)")
    print(f"    engine time per turn at turn {late:>5}:    {t_late * 1e3:10.3f} ms  (turn {late} alone: "
          f"{times[late - 1] * 1e3:.3f} ms)")
    print(f"    Redis bytes read per turn at turn {early:>5}: {b_early:10,.0f}  (turn {early} alone: "
          f"{sent[early - 1]:,})")
    print(f"    Redis bytes read per turn at turn {late:>5}: {b_late:10,.0f}  (turn {late} alone: "
          f"{sent[late - 1]:,})")
    print(f"    turn {late} / turn {early}:                    time {t_late / t_early:.2f} x, bytes "
          f"{b_late / b_early:.2f} x")
    assert b_late / b_early < 2, f"Redis bytes per turn grew {b_late / b_early:.2f}x from turn {early} to {late}"
    assert t_late / t_early < 2, f"engine time per turn grew {t_late / t_early:.2f}x from turn {early} to {late}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--long-turns", type=int, default=1500)
    parser.add_argument("--cluster", action="store_true", help="start a private 3-node Redis Cluster")
    parser.add_argument("--limits", action="store_true", help="every limit set (none reached)")
    parser.add_argument("--pairs", type=int, default=2000,
                        help="turns with limits off and on, interleaved (0: skip that comparison)")
    parser.add_argument("--only-pairs", action="store_true", help="only the limits off / on comparison")
    parser.add_argument("--repeat", type=int, default=1, help="run the limits off / on comparison this many times")
    parser.add_argument("--slowlog", action="store_true",
                        help="also the scripts' time inside Redis (SLOWLOG; logging every command slows Redis)")
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL")
    cluster = os.environ.get("REDIS_CLUSTER", "").lower() in ("1", "true", "yes")
    stop: Any = None
    if not url and args.cluster:
        from tests.support.redis_servers import RedisCluster as PrivateCluster

        private = PrivateCluster().start()
        url, cluster, stop = private.url, True, private.stop
    elif not url:
        url, proc, workdir = start_private_redis()

        def stop() -> None:
            proc.terminate()
            proc.wait(timeout=10)
            shutil.rmtree(workdir, ignore_errors=True)
    try:
        if not args.only_pairs:
            asyncio.run(bench(url, cluster, args.threads, args.turns, args.concurrency, args.long_turns, args.limits))
        if args.pairs:
            ratios = [asyncio.run(limits_on_off(url, cluster, args.pairs, args.slowlog)) for _ in range(args.repeat)]
            if args.repeat > 1:
                same, cost = [r[0] for r in ratios], [r[1] for r in ratios]
                print(f"  over {args.repeat} runs: p50 A'/A {min(same):.3f}-{max(same):.3f} (median "
                      f"{statistics.median(same):.3f}), p50 B/A {min(cost):.3f}-{max(cost):.3f} (median "
                      f"{statistics.median(cost):.3f})")
    finally:
        if stop is not None:
            stop()


if __name__ == "__main__":
    main()
