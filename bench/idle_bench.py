"""Redis round trips of a turn on a busy connection and after the connection sat idle, and the engine's
overhead per turn against a PING, with the Redis client built exactly as the product builds it
(bot/bootstrap.py from settings), on one redis-server and on a 3-node Redis Cluster; then what idle worker
processes cost Redis.

    python bench/idle_bench.py [--idle 20] [--turns 300] [--threads 30] [--no-cluster]
                               [--window 30] [--settle 1] [--workers 1,2] [--only-workers | --no-workers]

Requests are what the engine sent (its store's and its usage ledger's request counters) plus the
commands the servers saw that no turn asked for (PING, HELLO, CLIENT, CLUSTER, …), from INFO
commandstats. Sequential round trips count requests that were in flight at the same time once (the
usage record goes out together with the commit), timed around each store and ledger call.
The model is an instant stand-in that reports token usage like the real one, so every
ordinary turn also records its usage. Every turn must be answered, or the run is reported invalid.
Targets: after an idle spell the same round trips per turn as busy; p50 turn overhead under 5x a PING.
Each run twice: limits off, and limits on (every limit set, none reached: each turn checks and counts them).

Idle workers: 1, then 2 real ``threadguard slack --http`` processes with the default settings (Slack and the
Messages API are local stand-ins) run ``--startup`` seconds, then answer one thread each; ``--settle``
seconds after the last answer is committed, the Redis commands every server ran (INFO commandstats, less
the bench's own INFO) are counted for ``--window`` seconds, per second and per worker, and again for the
``--then`` seconds after. Then each worker must answer another thread, or the run is reported invalid.
Target: well under 1 command a second per idle worker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import redis.asyncio

from bot.bootstrap import Runtime, build_runtime
from bot.model import ModelRequest, ModelResponse, TextBlock, Usage
from bot.store import keys
from bot.types import Author, IncomingMessage, ReplyKind, ThreadRef
from config.communities import Communities, CommunityConfig, CommunityLimits
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
from tests.support.anthropic_standin import AnthropicStandin, reply
from tests.support.redis_servers import RedisCluster, RedisServer
from tests.support.slack_standin import SlackStandin
from tests.support.workers import Worker, post_event, worker_env

#: Commands a turn never sends itself: connection upkeep and cluster topology.
UPKEEP = ("ping", "hello", "client", "select", "auth", "cluster", "command", "readonly")


class InstantModel:
    label = "instant"
    offline = True

    async def respond(self, request: ModelRequest, sink: object = None) -> ModelResponse:
        return ModelResponse([TextBlock("A short answer.")], "end_turn",
                             Usage(input_tokens=120, output_tokens=8, cache_read_input_tokens=900, calls=1))

    async def aclose(self) -> None:
        return None


async def commandstats(admins: list[redis.asyncio.Redis]) -> dict[str, int]:
    total: dict[str, int] = {}
    for admin in admins:
        for name, data in (await admin.info("commandstats")).items():
            cmd = name.removeprefix("cmdstat_").split("|")[0]
            total[cmd] = total.get(cmd, 0) + int(data["calls"])
    return total


def sequential_steps(spans: list[tuple[float, float]]) -> int:
    """How many one-after-another steps a set of (start, end) request spans took (overlapping ones are one)."""
    steps, end = 0, float("-inf")
    for a, b in sorted(spans):
        if a >= end:
            steps += 1
            end = b
        else:
            end = max(end, b)
    return steps


class Probe:
    def __init__(self, runtime: Runtime, admins: list[redis.asyncio.Redis]) -> None:
        self.runtime = runtime
        self.admins = admins
        self.answered = 0
        self.turns = 0
        self.spans: list[tuple[float, float]] = []
        # every request of the store is timed (a limit check sent again with a busy thread's message is a
        # step of its own), and the usage ledger's
        connection: Any = runtime.store.health
        connection.trip = self._timed_trip(connection.trip)
        for name in ("record_turn", "record_case"):
            setattr(runtime.usage, name, self._timed(getattr(runtime.usage, name)))

    def _timed_trip(self, trip: Any) -> Any:
        spans = self.spans

        class Timed:
            def __init__(self, what: str) -> None:
                self.inner = trip(what)
                self.started = 0.0

            async def __aenter__(self) -> None:
                self.started = time.perf_counter()
                await self.inner.__aenter__()

            async def __aexit__(self, *exc: Any) -> None:
                try:
                    await self.inner.__aexit__(*exc)
                finally:
                    spans.append((self.started, time.perf_counter()))

        return Timed

    def _timed(self, call: Any) -> Any:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            finally:
                self.spans.append((started, time.perf_counter()))
        return timed

    def requests(self) -> int:
        return self.runtime.store.health.round_trips + self.runtime.usage.round_trips

    async def turn(self, thread: ThreadRef, n: int) -> float:
        started = time.perf_counter()
        outcome = await self.runtime.member_actions.handle_message(
            IncomingMessage(thread, Author("u1", "member"), f"message {n}", message_id=f"m{n}"))
        elapsed = time.perf_counter() - started
        self.turns += 1
        self.answered += any(r.kind is ReplyKind.ANSWER for r in outcome.replies)
        return elapsed

    async def measured(self, thread: ThreadRef, n: int) -> tuple[int, int, dict[str, int], int]:
        """(engine requests, upkeep commands, upkeep by command, sequential steps) of one turn."""
        before, stats = self.requests(), await commandstats(self.admins)
        self.spans.clear()
        await self.turn(thread, n)
        steps = sequential_steps(self.spans)
        after = await commandstats(self.admins)
        upkeep = {c: after.get(c, 0) - stats.get(c, 0) for c in UPKEEP if after.get(c, 0) != stats.get(c, 0)}
        return self.requests() - before, sum(upkeep.values()), upkeep, steps + sum(upkeep.values())


#: Limits every turn checks and counts but none reaches: what limits cost, not what they refuse.
LIMITS = CommunityLimits(messages_per_minute=10_000, burst=10_000, tokens_per_day=1_000_000_000,
                         daily_spend_usd=1_000_000)


async def run(label: str, url: str, cluster: bool, admin_urls: list[str], args: Any, *, limits: bool = False) -> bool:
    settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=url, cluster=cluster),
                        engine=EngineSettings())
    communities = Communities(CommunityConfig(limits=LIMITS)) if limits else None
    runtime = build_runtime(settings, model=InstantModel(), communities=communities)
    label = f"{label}, limits {'on' if limits else 'off'}"
    admins = [redis.asyncio.Redis.from_url(u, decode_responses=True) for u in admin_urls]
    probe = Probe(runtime, admins)
    threads = [ThreadRef("discord", "bench", "c", f"idle-{label}-{i}") for i in range(args.threads)]
    try:
        for i, thread in enumerate(threads):  # warm every connection and script
            await probe.turn(thread, i)
        pings: list[float] = []
        latencies: list[float] = []
        for n in range(args.turns):  # interleaved, so both see the same machine (the scheduler moves them)
            pings.append(await runtime.store.health.ping())
            latencies.append(await probe.turn(threads[n % len(threads)], 1000 + n))
        busy = [await probe.measured(threads[n % len(threads)], 5000 + n) for n in range(20)]
        print(f"  {label}: idling {args.idle:.0f} s …", flush=True)
        await asyncio.sleep(args.idle)
        idle = await probe.measured(threads[0], 9000)
    finally:
        for admin in admins:
            await admin.aclose()
        await runtime.aclose()
    if probe.answered != probe.turns:
        print(f"  {label}: only {probe.answered} of {probe.turns} turns were answered: the run is not valid")
        return False
    busy_trips = statistics.mean(r + u for r, u, _, _ in busy)
    busy_steps = statistics.mean(s for _, _, _, s in busy)
    idle_trips = idle[0] + idle[1]
    ratio = statistics.median(latencies) / statistics.median(pings)
    print(f"  {label}: Redis requests per ordinary turn: busy {busy_trips:.2f}, after {args.idle:.0f} s idle "
          f"{idle_trips}{' (upkeep: ' + ', '.join(f'{k} {v}' for k, v in idle[2].items()) + ')' if idle[2] else ''}"
          f"  (target: the same: {'met' if idle_trips <= busy_trips else 'NOT met'})")
    print(f"  {label}: sequential round trips per ordinary turn (requests sent together count once): busy "
          f"{busy_steps:.2f}, after {args.idle:.0f} s idle {idle[3]}")
    print(f"  {label}: p50 turn {statistics.median(latencies) * 1000:.2f} ms, p50 PING "
          f"{statistics.median(pings) * 1000:.3f} ms: {ratio:.1f}x  (target < 5x: {'met' if ratio < 5 else 'NOT met'})"
          f"; {probe.turns} turns, all answered")
    return idle_trips <= busy_trips and idle[3] <= busy_steps and ratio < 5


#: What ``tests.support.workers.worker_env`` shortens for the fault tests: the bench runs the defaults.
TEST_SHORTENED = ("THREADGUARD_LOCK_TTL_SECONDS", "THREADGUARD_RECOVERY_INTERVAL", "THREADGUARD_MAINTENANCE_INTERVAL",
                  "THREADGUARD_NOTICE_INTERVAL")


class Conversations:
    """Opening mentions posted to the workers, and whether each was answered: the Slack stand-in shows the
    answer and its turn is committed (the thread's inbox empty, its lease handed back)."""

    def __init__(self, slack: SlackStandin, admin: redis.asyncio.Redis) -> None:
        self.slack = slack
        self.admin = admin
        self.n = 0

    async def answered(self, http: aiohttp.ClientSession, worker: Worker, within: float = 30.0) -> bool:
        self.n += 1
        ts = f"{1_900_000_000 + self.n}.000100"
        event = {"type": "app_mention", "user": "UALICE", "text": f"<@UBOT> question {self.n}", "ts": ts,
                 "channel": "CGENERAL", "event_ts": ts, "team": self.slack.team_id}
        payload = {"token": "legacy", "team_id": self.slack.team_id, "api_app_id": "A0APP", "type": "event_callback",
                   "event_id": f"EvIdle{self.n:06d}", "event_time": int(time.time()), "event": event,
                   "authorizations": [{"team_id": self.slack.team_id, "user_id": "UBOT", "is_bot": True}]}
        if await post_event(http, worker.url, payload) != 200:
            return False
        key = f"slack:{self.slack.team_id}:CGENERAL:{ts}"
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            shown = [self.slack.bot_messages.get(str(c.args.get("_ts")), "") for c in self.slack.calls
                     if c.method in ("chat.postMessage", "chat.startStream") and c.args.get("thread_ts") == ts]
            if any("An answer" in text for text in shown) \
                    and not await self.admin.exists(keys.inbox(key), keys.lock(key)):
                return True
            await asyncio.sleep(0.05)
        return False


async def idle_workers(label: str, url: str, cluster: bool, admin_urls: list[str], count: int, args: Any,
                       slack: SlackStandin, model: AnthropicStandin) -> bool:
    env = worker_env(url, slack.base_url, model.base_url, cluster=cluster)
    for name in TEST_SHORTENED:
        env.pop(name)
    workers = [Worker(f"idle{i}", env).start() for i in range(count)]
    admins = [redis.asyncio.Redis.from_url(u, decode_responses=True) for u in admin_urls]
    data = (redis.asyncio.RedisCluster.from_url(url, decode_responses=True) if cluster
            else redis.asyncio.Redis.from_url(url, decode_responses=True))
    talk = Conversations(slack, data)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            for worker in workers:
                await worker.ready()
            await asyncio.sleep(args.startup)  # the passes every loop makes as it starts are over
            served = [await talk.answered(http, w) for w in workers]
            await asyncio.sleep(args.settle)
            before = await commandstats(admins)
            await asyncio.sleep(args.window)
            after = await commandstats(admins)
            if args.then:
                await asyncio.sleep(args.then)
            then = await commandstats(admins)
            served += [await talk.answered(http, w) for w in workers]
        alive = all(w.alive for w in workers)
    finally:
        for worker in workers:
            worker.close()
        for admin in admins:
            await admin.aclose()
        await data.aclose()
    ran = {c: after.get(c, 0) - before.get(c, 0) for c in after if c != "info"}
    ran = {c: n for c, n in sorted(ran.items(), key=lambda kv: -kv[1]) if n}
    total = sum(ran.values())
    per_second = total / args.window
    valid = alive and all(served)
    print(f"  {label}, {count} idle worker(s): {per_second:.2f} Redis commands/s in all, "
          f"{per_second / count:.2f} per worker over {args.window:.0f} s, from {args.settle:g} s after their last "
          f"answer  (target well under 1 per worker: {'met' if per_second / count < 1 else 'NOT met'})")
    print(f"    by command over the window: {', '.join(f'{c} {n}' for c, n in ran.items()) or 'none'}")
    if args.then:
        later = sum(then.get(c, 0) - after.get(c, 0) for c in then if c != "info")
        print(f"    the {args.then:.0f} s after that: {later / args.then:.3f} commands/s in all, "
              f"{later / args.then / count:.3f} per worker")
    if not valid:
        print(f"    the run is not valid: {'a worker died' if not alive else 'a thread was not answered'}")
    return valid and per_second / count < 1


async def idle_worker_runs(args: Any) -> bool:
    ok = True
    # a worker stopped at the end of a run may leave the stand-in an answer it can no longer write
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    slack, model = SlackStandin(), AnthropicStandin()
    model.responder = lambda body: reply("An answer.")
    await slack.start()
    await model.start()
    counts = [int(n) for n in args.workers.split(",")]
    print("Idle worker processes (threadguard slack --http, default settings): Redis commands over "
          f"{args.window:.0f} s")
    try:
        for count in counts:
            with RedisServer() as server:
                ok &= await idle_workers("one server", server.url, False, [server.url], count, args, slack, model)
        if args.cluster:
            for count in counts:
                cluster = RedisCluster()
                try:
                    cluster.start()
                    ok &= await idle_workers("3-node cluster", cluster.url, True, [s.url for s in cluster.servers],
                                             count, args, slack, model)
                finally:
                    cluster.stop()
    finally:
        await model.stop()
        await slack.stop()
    return ok


async def main(args: Any) -> int:
    ok = True
    if not args.only_workers:
        print("Redis round trips and overhead per turn, client built by bot/bootstrap.py")
        with RedisServer() as server:
            for limits in (False, True):
                ok &= await run("one server", server.url, False, [server.url], args, limits=limits)
        if args.cluster:
            cluster = RedisCluster()
            try:
                cluster.start()
                urls = [s.url for s in cluster.servers]
                for limits in (False, True):
                    ok &= await run("3-node cluster", cluster.url, True, urls, args, limits=limits)
            finally:
                cluster.stop()
    if args.idle_workers:
        ok &= await idle_worker_runs(args)
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--threads", type=int, default=30)
    parser.add_argument("--no-cluster", dest="cluster", action="store_false")
    parser.add_argument("--window", type=float, default=30.0, help="seconds the idle workers are counted")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds after the last answer before counting")
    parser.add_argument("--startup", type=float, default=10.0, help="seconds the workers run before the traffic")
    parser.add_argument("--then", type=float, default=30.0, help="seconds counted after the window (0: none)")
    parser.add_argument("--workers", default="1,2", help="idle worker processes per run, comma separated")
    parser.add_argument("--only-workers", action="store_true", help="only the idle worker processes")
    parser.add_argument("--no-workers", dest="idle_workers", action="store_false", help="no idle worker processes")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
