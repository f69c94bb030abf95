"""What members see, in order, from real ``threadguard slack --http`` workers under load.

Two worker processes share one redis-server, the Slack stand-in (which logs every post, update and delete)
and a scripted Messages API. Each member writes again the moment the bot's answer appears, to the other
worker, so a later answer would overtake any notice still waiting; the workspace's ``chat.update`` budget
is spent by 30 threads streaming at once. Crisis resources and warnings must still come right after
their answer, before the next answer and before any freeze notice; and a worker stopped (SIGSTOP) past its
lease and resumed after another took its thread over must post nothing at all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from adapters.slack.translate import escape
from config.communities import DEFAULT_CRISIS_RESOURCES
from tests.e2e.slack.conftest import Payloads, thread_texts
from tests.support.anthropic_standin import AnthropicStandin, Reply, reply, split_text, text, tool_use
from tests.support.redis_servers import RedisServer
from tests.support.slack_standin import SlackStandin
from tests.support.workers import Worker, member_text, post_event, until, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ANSWER = "Answer to: "
CRISIS = escape(DEFAULT_CRISIS_RESOURCES)
THREADS = 30
#: Answers stream for about a second each (the stand-in sends 10 characters a delta), so 30 threads at once
#: spend the workspace's ``chat.update`` budget and the last updates of answers wait on it.
FILLER = " Here is a longer answer, streamed a few words at a time, so that it is updated while it grows" * 2
CHUNK_DELAY = 0.05
STREAM_SECONDS = len(split_text(FILLER)) * CHUNK_DELAY
#: Long enough that a worker slowed by a loaded machine does not lose a lease it still works under.
LEASE = {"THREADGUARD_LOCK_TTL_SECONDS": "4"}


def after_tool(body: dict[str, Any]) -> bool:
    content = body["messages"][-1]["content"]
    return isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)


class Script:
    """``risk …`` flags risk, ``warn …`` is redirected, ``end …`` ends the thread for abuse; every answer
    says what it answers. A text in ``held`` is answered (the first time) only once its event is set."""

    def __init__(self, standin: AnthropicStandin) -> None:
        self.final_at: dict[str, float] = {}
        self.held: dict[str, asyncio.Event] = {}
        self.asked: list[str] = []
        standin.responder = self.respond

    def respond(self, body: dict[str, Any]) -> Reply:
        said = member_text(body)
        self.asked.append(said)
        if after_tool(body):
            return self._answer(said)
        kind = said.split()[0]
        if kind == "risk":
            return reply(text("I hear you, and I'm staying right here with you. "),
                         tool_use("flag_risk", {"kind": "self_harm", "note": "the member may be at risk"}),
                         chunk_delay=CHUNK_DELAY)
        if kind == "warn":
            return reply(text("I can't help with that, but here is something else. "),
                         tool_use("record_redirection", {"category": "harassment", "note": "declined"}),
                         chunk_delay=CHUNK_DELAY)
        if kind == "end":
            return reply(text(ANSWER + said),
                         tool_use("end_conversation", {"reason": "persistent_abuse", "category": "harassment",
                                                       "summary": "kept asking after the warning"}),
                         chunk_delay=CHUNK_DELAY)
        held = self.held.pop(said, None)
        if held is not None:
            return self._answer_once(held, said)
        return self._answer(said)

    async def _answer_once(self, held: asyncio.Event, said: str) -> Reply:
        await held.wait()
        return self._answer(said)

    def _answer(self, said: str) -> Reply:
        """The answer; ``final_at``: when its stream has been sent (its turn commits right after)."""
        answer = ANSWER + said + FILLER
        self.final_at[said] = time.monotonic() + len(split_text(answer)) * CHUNK_DELAY
        return reply(answer, chunk_delay=CHUNK_DELAY)


def kind_of(shown: str) -> str:
    if shown == CRISIS:
        return "crisis"
    if shown.startswith("\u26a0\ufe0f Warning"):
        return "warning"
    if shown.startswith("This conversation has been ended because"):
        return "freeze"
    return "answer"


@pytest_asyncio.fixture
async def setup(standin: SlackStandin, anthropic_standin: AnthropicStandin,
                ) -> AsyncIterator[Callable[..., Any]]:
    started: list[Worker] = []
    with RedisServer() as server:
        async def start(count: int = 2, **extra: str) -> list[Worker]:
            env = worker_env(server.url, standin.base_url, anthropic_standin.base_url, **extra)
            new = [Worker(f"w{len(started) + i}", env).start() for i in range(count)]
            started.extend(new)
            await asyncio.gather(*(w.ready() for w in new))
            return new

        try:
            yield start
        finally:
            for w in started:
                if w.proc is not None and w.proc.poll() is None:
                    os.kill(w.proc.pid, signal.SIGCONT)
                w.close()


#: Seconds Slack takes to accept a warning in the 30-thread test.
SLOW_WARNING = 3.0


async def test_notices_come_right_after_their_answer_in_30_threads_at_once(setup, standin, anthropic_standin,
                                                                           payloads: Payloads):
    script = Script(anthropic_standin)
    # Slack is slow to take warnings: the next answer would have seconds to overtake one
    standin.delay_for = lambda method, args: SLOW_WARNING if str(args.get("text", "")).startswith("\u26a0") else 0.0
    a, b = await setup(2, **LEASE)
    workers = [a, b]
    crisis_delays: list[float] = []

    async def posts(root: str, at_least: int) -> list[str]:
        try:
            return await until(lambda: (t := thread_texts(standin, root)) and len(t) >= at_least and t, 30,
                               f"{at_least} post(s) in {root}")
        except AssertionError:
            for w in workers:
                print(w.name, "\n".join(line for line in w.log().splitlines() if root in line or "WARN" in line))
            print(thread_texts(standin, root), script.asked)
            raise

    async def risk_thread(session: aiohttp.ClientSession, i: int) -> str:
        first = payloads.mention(f"risk {i}")
        root = first["event"]["ts"]
        assert await post_event(session, workers[i % 2].url, first) == 200
        await posts(root, 1)  # the answer is on screen: the member writes again at once, to the other worker
        assert await post_event(session, workers[(i + 1) % 2].url, payloads.message(f"next {i}", root)) == 200
        # (answers are told apart from notices, not by their words: their last update may still wait)
        await until(lambda: CRISIS in thread_texts(standin, root) and len(thread_texts(standin, root)) >= 3, 60,
                    f"thread {i} settled")
        crisis_post = next(c.at for c in standin.calls if c.method == "chat.postMessage"
                           and c.args.get("thread_ts") == root and c.args.get("text") == CRISIS)
        crisis_delays.append(crisis_post - script.final_at[f"risk {i}"])
        return root

    async def warn_thread(session: aiohttp.ClientSession, i: int) -> str:
        first = payloads.mention(f"warn {i} a")
        root = first["event"]["ts"]
        assert await post_event(session, workers[i % 2].url, first) == 200
        for n, word in enumerate(("b", "c"), start=1):
            await posts(root, n)
            event = payloads.message(f"warn {i} {word}", root)
            assert await post_event(session, workers[(i + n) % 2].url, event) == 200
        await posts(root, 3)  # the third redirection's answer is on screen
        await asyncio.sleep(STREAM_SECONDS + 1.0)  # its turn has committed; its warning is on its way
        assert await post_event(session, workers[(i + 1) % 2].url, payloads.message(f"end {i}", root)) == 200
        await until(lambda: any(kind_of(t) == "freeze" for t in thread_texts(standin, root)), 60,
                    f"thread {i} ended")
        return root

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        runs = [risk_thread(session, i) if i % 2 == 0 else warn_thread(session, i) for i in range(THREADS)]
        roots = await asyncio.gather(*runs)
    await asyncio.sleep(1.0)  # anything late would land now

    in_order = 0
    for i, root in enumerate(roots):
        texts = thread_texts(standin, root)
        kinds = [kind_of(t) for t in texts]
        if i % 2 == 0:
            expected = ["answer", "crisis", "answer"]
        else:
            expected = ["answer", "answer", "answer", "warning", "answer", "freeze"]
        in_order += kinds == expected
    for i, root in enumerate(roots):
        assert [kind_of(t) for t in thread_texts(standin, root)] == (
            ["answer", "crisis", "answer"] if i % 2 == 0 else
            ["answer", "answer", "answer", "warning", "answer", "freeze"]), (i, in_order)
    crisis_delays.sort()
    p99 = crisis_delays[min(len(crisis_delays) - 1, int(len(crisis_delays) * 0.99))]
    updates = len([c for c in standin.calls if c.method == "chat.update"])
    print(f"\nnotice order: {in_order}/{THREADS} threads in ladder order; crisis resources after the flagging "
          f"turn's last model response: median {statistics.median(crisis_delays):.3f} s, p99 {p99:.3f} s, "
          f"max {crisis_delays[-1]:.3f} s over {len(crisis_delays)} threads; {updates} chat.update calls")
    # Not a speed target (the figure above is printed for that): crisis resources that queued behind any
    # thread's slow warning would arrive at least SLOW_WARNING late; the margin leaves room for a loaded machine.
    assert p99 < SLOW_WARNING - 0.25
    for w in workers:
        assert "Traceback" not in w.log(), w.log()[-3000:]


async def test_a_stopped_owner_resumed_after_takeover_posts_nothing(setup, standin, anthropic_standin,
                                                                    payloads: Payloads):
    """10 trials: the owner is SIGSTOPped while its model call waits, stays stopped past its lease until the
    other worker has answered, then resumes with the model's full answer in its socket. (The "working"
    placeholder is put off: on a loaded machine the owner could post it before it is stopped, a post made
    while it held the lease, which is withdrawn once its commit is refused: not what this test is about.)"""
    script = Script(anthropic_standin)
    a, b = await setup(2, **LEASE, THREADGUARD_WORKING_NOTICE_SECONDS="120")
    extra_posts = extra_deletes = extra_updates = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for trial in range(10):
            owner = a if trial % 2 == 0 else b
            said = f"question {trial}"
            released = script.held[said] = asyncio.Event()  # the first call waits; a later one does not
            mention = payloads.mention(said)
            root = mention["event"]["ts"]
            asked = len(script.asked)
            assert await post_event(session, owner.url, mention) == 200
            await until(lambda s=said, n=asked: s in script.asked[n:], 10, "the owner's model call")
            assert owner.proc is not None
            os.kill(owner.proc.pid, signal.SIGSTOP)
            try:
                await until(lambda r=root, s=said: f"{ANSWER}{s}{FILLER}" in thread_texts(standin, r), 30,
                            "the other worker's answer")
                released.set()
                await asyncio.sleep(STREAM_SECONDS + 0.5)  # the owner's model answer now waits in its socket
            finally:
                os.kill(owner.proc.pid, signal.SIGCONT)
            refused = owner.log().count("not committed")
            await until(lambda o=owner, n=refused: o.log().count("not committed") > n, 15, "the stale turn refused")
            await asyncio.sleep(0.5)
            thread_calls = [c for c in standin.calls if c.args.get("thread_ts") == root
                            or c.args.get("ts") in _bot_ts(standin, root)]
            posted = [c for c in thread_calls if c.method in ("chat.postMessage", "chat.startStream")]
            extra_posts += len(posted) - 1
            extra_deletes += len([c for c in standin.calls if c.method == "chat.delete"
                                  and c.args.get("ts") in _bot_ts(standin, root)])
            answer_ts = {c.args.get("_ts") for c in posted}
            extra_updates += len([c for c in standin.calls
                                  if c.method in ("chat.update", "chat.appendStream", "chat.stopStream")
                                  and c.args.get("channel") and c.args.get("ts") not in answer_ts
                                  and c.args.get("ts") in _bot_ts(standin, root)])
            assert thread_texts(standin, root) == [f"{ANSWER}{said}{FILLER}"]
    print(f"\nstopped owner resumed after takeover: {extra_posts} extra posts, {extra_deletes} deletes, "
          f"{extra_updates} foreign updates over 10 trials")
    leases = [f"{w.name}: {line}" for w in (a, b) for line in w.log().splitlines()
              if "lost" in line or "not committed" in line or "withheld" in line]
    assert (extra_posts, extra_deletes, extra_updates) == (0, 0, 0), "\n".join(leases)
    for w in (a, b):
        assert "Traceback" not in w.log(), w.log()[-3000:]


def _bot_ts(standin: SlackStandin, root: str) -> set[str]:
    return {str(c.args["_ts"]) for c in standin.calls
            if c.method in ("chat.postMessage", "chat.startStream") and c.args.get("thread_ts") == root
            and c.args.get("_ts")}
