"""One run of the Slack load bench: a private redis-server, the Slack stand-in enforcing Slack's documented
rate limits, the Messages API stand-in streaming paced answers, and real ``threadguard slack --http PORT``
worker processes; N threads' first messages sent at once as signed Events API requests, one workspace.

What members saw is read from the Slack stand-in's timeline of its bot messages' text
(``tests/support/slack_timeline.py``), whatever Web API methods the bot used to show it; when the model's
last token went out, from the Messages API stand-in. Each thread's answer is a text of its own, so an
answer that is missing, cut short or shown twice is found by its text. ``bench/slack_load_bench.py``
runs the matrix and prints the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio

from tests.support.anthropic_standin import AnthropicStandin, Reply, reply
from tests.support.redis_servers import RedisServer
from tests.support.slack_rate_limits import SlackRateLimits
from tests.support.slack_standin import BOT_TOKEN, SlackStandin
from tests.support.slack_timeline import TextTimeline
from tests.support.workers import SIGNING_SECRET, Worker, newest_user_text, sign

TEAM = "T0TEAM"
BOT_USER = "UBOT"
QUESTION = re.compile(r"question Q(\d{5})")
#: Commands the bench itself sends to Redis (its INFO reads), left out of the counts.
OWN_COMMANDS = frozenset({"info"})
SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
WORDS = ("the", "river", "bridge", "holds", "steady", "while", "water", "rises", "under", "morning", "light",
         "and", "every", "plank", "carries", "weight", "across", "quiet", "town", "square")


@dataclass(frozen=True)
class Spec:
    threads: int
    workers: int
    channels: int = 20
    answer_chars: int = 600
    chunk_chars: int = 24
    pace: float = 0.08  # seconds between streamed chunks: 300 characters a second
    first_token: float = 0.5  # seconds before the first token
    timeout: float = 600.0
    idle_seconds: float = 5.0


def answer_for(n: int, chars: int) -> str:
    """Thread ``n``'s answer: its own marker, then words (letters and spaces only: nothing Slack escapes)."""
    words = [f"Answer A{n:05d}"]
    i = n
    while sum(len(w) + 1 for w in words) < chars:
        words.append(WORDS[i % len(WORDS)])
        i += 7
    return " ".join(words) + "."


def marker(n: int) -> str:
    return f"Answer A{n:05d} "


@dataclass
class Result:
    spec: Spec
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    refused: Counter[str] = field(default_factory=Counter)
    refused_by: Counter[str] = field(default_factory=Counter)
    slack_calls: Counter[str] = field(default_factory=Counter)
    model_calls: int = 0
    #: Redis commands per turn during the traffic, less what the workers sent idle over as long.
    commands_per_turn: float = 0.0
    commands_by_name: dict[str, float] = field(default_factory=dict)
    scripts_per_turn: float = 0.0
    idle_before: float = 0.0
    idle_after: float = 0.0
    idle_after_by_command: dict[str, float] = field(default_factory=dict)
    ack_p99: float = 0.0
    acks_late: int = 0
    problems: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def throughput(self) -> float:
        return self.spec.threads / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Nearest rank: the smallest latency at or above ``p`` percent of them."""
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def commandstats(client: redis.asyncio.Redis) -> Counter[str]:
    stats: Counter[str] = Counter()
    for name, data in (await client.info("commandstats")).items():
        stats[name.removeprefix("cmdstat_").split("|")[0]] += int(data["calls"])
    return stats


def _delta(after: Counter[str], before: Counter[str]) -> Counter[str]:
    return Counter({k: after[k] - before[k] for k in after if after[k] - before[k] > 0 and k not in OWN_COMMANDS})


class Model:
    """The Messages API's answers: thread ``n``'s own text, streamed in paced chunks."""

    def __init__(self, standin: AnthropicStandin, spec: Spec) -> None:
        self.spec = spec
        self.asked: Counter[int] = Counter()
        standin.responder = self.respond

    def respond(self, body: dict[str, Any]) -> Reply:
        found = QUESTION.search(newest_user_text(body))
        n = int(found[1]) if found else -1
        self.asked[n] += 1
        return reply(answer_for(n, self.spec.answer_chars), delay=self.spec.first_token,
                     chunk_delay=self.spec.pace, chunk_chars=self.spec.chunk_chars)


def mention(n: int, channel: str) -> dict[str, Any]:
    """Member ``n``'s first message, mentioning the bot in ``channel``: a new thread."""
    ts = f"{1_800_000_000 + n}.000300"
    event = {"type": "app_mention", "user": f"U{n:05d}", "text": f"<@{BOT_USER}> question Q{n:05d}: how do bridges "
             "carry weight?", "ts": ts, "channel": channel, "event_ts": ts, "team": TEAM}
    return {"token": "legacy", "team_id": TEAM, "api_app_id": "A0APP", "type": "event_callback",
            "event_id": f"Ev{n:08d}", "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}], "event": event}


class Load:
    """Everything one run needs, started in order and stopped in reverse (``async with Load(spec)``)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.limits = SlackRateLimits()
        self.timeline = TextTimeline()
        self.slack = SlackStandin(team_id=TEAM, bot_user_id=BOT_USER, rate_limits=self.limits,
                                  bot_messages=self.timeline)
        self.anthropic = AnthropicStandin()
        self.model = Model(self.anthropic, spec)
        self.redis = RedisServer()
        self.workers: list[Worker] = []
        self.channels = [f"C{c:04d}" for c in range(spec.channels)]
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Load:
        try:
            self.redis.start()
            self._stack.callback(self.redis.close)
            await self.slack.start()
            self._stack.push_async_callback(self.slack.stop)
            await self.anthropic.start()
            self._stack.push_async_callback(self.anthropic.stop)
            env = {"REDIS_URL": self.redis.url, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                   "SLACK_API_BASE_URL": self.slack.base_url, "ANTHROPIC_API_KEY": "bench-key",
                   "ANTHROPIC_BASE_URL": self.anthropic.base_url, "THREADGUARD_METRICS_PORT": "0"}
            self.workers = [Worker(f"load{i}", env) for i in range(self.spec.workers)]
            for worker in self.workers:
                self._stack.callback(worker.close)
                worker.start()
            await asyncio.gather(*(w.ready() for w in self.workers))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for worker in self.workers:
            worker.terminate(20)
        await self._stack.aclose()

    @contextlib.asynccontextmanager
    async def admin(self) -> AsyncIterator[redis.asyncio.Redis]:
        client = redis.asyncio.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            yield client
        finally:
            await client.aclose()

    async def idle_rate(self, client: redis.asyncio.Redis) -> tuple[float, Counter[str]]:
        """Redis commands a second over ``idle_seconds`` (the bench's own reads left out)."""
        before = await commandstats(client)
        await asyncio.sleep(self.spec.idle_seconds)
        spent = _delta(await commandstats(client), before)
        return sum(spent.values()) / self.spec.idle_seconds, spent

    async def send(self, session: aiohttp.ClientSession) -> tuple[float, list[float], list[int]]:
        """Every thread's first message at once, round robin over the workers: (sent at, ack times, statuses)."""
        async def one(n: int) -> tuple[float, int]:
            payload = mention(n, self.channels[n % len(self.channels)])
            body = json.dumps(payload)
            stamp = int(time.time())
            headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": str(stamp),
                       "X-Slack-Signature": sign(body, stamp)}
            started = time.monotonic()
            async with session.post(self.workers[n % len(self.workers)].url, data=body.encode(),
                                    headers=headers) as resp:
                await resp.read()
                return time.monotonic() - started, resp.status
        sent = time.monotonic()
        done = await asyncio.gather(*(one(n) for n in range(self.spec.threads)))
        return sent, [d for d, _ in done], [s for _, s in done]

    def answers(self) -> dict[int, str]:
        return {n: answer_for(n, self.spec.answer_chars) for n in range(self.spec.threads)}

    async def until_answered(self, deadline: float) -> dict[int, float]:
        """When each thread's whole answer was first visible; waits until all are, or ``deadline``."""
        wanted = self.answers()
        seen: dict[int, float] = {}
        cursor = 0
        while len(seen) < len(wanted) and time.monotonic() < deadline:
            changes = self.timeline.changes
            for change in changes[cursor:]:
                if change.text is None:
                    continue
                for n in (int(m) for m in re.findall(r"Answer A(\d{5}) ", change.text)):
                    if n in wanted and n not in seen and wanted[n] in change.text:
                        seen[n] = change.at
            cursor = len(changes)
            await asyncio.sleep(0.05)
        return seen

    async def until_quiet(self, quiet: float = 1.0, longest: float = 15.0) -> float:
        """Wait until no Slack call came for ``quiet`` seconds (at most ``longest``); returns the last call's time."""
        started = time.monotonic()
        while True:
            last = self.slack.calls[-1].at if self.slack.calls else started
            now = time.monotonic()
            if now - last >= quiet or now - started >= longest:
                return last
            await asyncio.sleep(0.1)

    def check(self) -> list[str]:
        """Each thread's answer shown exactly once and complete; what went wrong, by thread."""
        problems: list[str] = []
        for n, answer in self.answers().items():
            holders = self.timeline.holding(marker(n))
            if not holders:
                problems.append(f"thread {n}: answer missing")
                continue
            if len(holders) > 1:
                problems.append(f"thread {n}: answer shown in {len(holders)} messages")
                continue
            shown = self.timeline[holders[0]]
            if answer not in shown:
                problems.append(f"thread {n}: answer incomplete ({len(shown)} of {len(answer)} characters shown)")
            elif shown.count(marker(n)) > 1:
                problems.append(f"thread {n}: answer shown twice in one message")
        return problems

    def worker_tracebacks(self) -> list[str]:
        return [w.name for w in self.workers if "Traceback" in w.log()]


async def run(spec: Spec) -> Result:
    """One run: start everything, measure, stop."""
    async with Load(spec) as load:
        return await measure(load)


async def measure(load: Load) -> Result:
    """Idle, send every first message, wait for every answer, check them, count."""
    spec = load.spec
    result = Result(spec)
    async with load.admin() as admin, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                                            connector=aiohttp.TCPConnector(limit=0)) as session:
        result.idle_before, _ = await load.idle_rate(admin)
        before, window = await commandstats(admin), time.monotonic()
        sent, acks, statuses = await load.send(session)
        bad = [s for s in statuses if s != 200]
        if bad:
            result.problems.append(f"{len(bad)} events not acknowledged with 200 ({Counter(bad)})")
        result.ack_p99 = sorted(acks)[max(0, math.ceil(0.99 * len(acks)) - 1)]
        result.acks_late = sum(1 for a in acks if a > 3.0)
        seen = await load.until_answered(sent + spec.timeout)
        stopped = await load.until_quiet()
        await asyncio.sleep(max(0.0, stopped + 1.0 - time.monotonic()))  # a second after traffic stopped
        spent, window = _delta(await commandstats(admin), before), time.monotonic() - window
        result.idle_after, idle = await load.idle_rate(admin)
    result.idle_after_by_command = {k: v / spec.idle_seconds for k, v in idle.most_common()}
    result.logs = [str(w.logfile) for w in load.workers]
    result.problems += load.check()
    result.problems += [f"{name}: a traceback in its log" for name in load.worker_tracebacks()]
    if seen:
        result.elapsed = max(seen.values()) - sent
    last_tokens: dict[str, float] = {}
    for token in load.anthropic.last_tokens:
        last_tokens.setdefault(token.text, token.at)
    for n, at in seen.items():
        token_at = last_tokens.get(answer_for(n, spec.answer_chars))
        if token_at is None:
            result.problems.append(f"thread {n}: shown, but the model never answered it")
        else:
            result.latencies.append(at - token_at)
    result.refused = Counter(c.method for c in load.slack.calls if c.status == 429)
    result.refused_by = Counter(load.limits.refused_by)
    result.slack_calls = Counter(c.method for c in load.slack.calls if c.status == 200)
    result.model_calls = load.anthropic.calls
    turns = max(1, spec.threads)
    result.commands_per_turn = max(0.0, sum(spent.values()) - result.idle_before * window) / turns
    result.commands_by_name = {k: v / turns for k, v in spent.most_common(8)}
    result.scripts_per_turn = sum(spent[c] for c in SCRIPT_COMMANDS) / turns
    return result
