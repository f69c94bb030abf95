"""The turn pipeline under faults, with real ``threadguard slack --http`` worker processes.

Two (or more) workers run against one private redis-server (or a 3-node Redis Cluster), the local Slack
stand-in and the Messages API stand-in. Workers are killed with SIGKILL or stopped with SIGTERM; the order
of turns is read from the Messages API stand-in's request log (the newest member text of each request),
and what members saw from the Slack stand-in (every posted message's final text).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.slack.conftest import CHANNEL, Payloads, thread_texts
from tests.support.anthropic_standin import AnthropicStandin, Reply, reply
from tests.support.redis_servers import RedisCluster, RedisServer
from tests.support.slack_standin import SlackStandin
from tests.support.workers import Worker, newest_user_text, post_event, worker_env

pytestmark = pytest.mark.timeout(240)

ANSWER = "Answer to: "


class Model:
    """The Messages API's behaviour: answer ``Answer to: <text>``; texts in ``slow`` wait first (once)."""

    def __init__(self, standin: AnthropicStandin) -> None:
        self.standin = standin
        self.slow: dict[str, float] = {}
        self.delay = 0.0
        standin.responder = self.respond

    def respond(self, body: dict[str, Any]) -> Reply:
        text = newest_user_text(body)
        delay = self.slow.pop(text, self.delay)
        return reply(ANSWER + text, delay=delay)

    def order(self) -> list[str]:
        """Member texts in the order their model calls arrived."""
        return [newest_user_text(b) for b in self.standin.bodies]


@pytest.fixture
def redis_target(request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    if request.param == "cluster":
        cluster = RedisCluster()
        cluster.start()
        try:
            yield cluster.url, True
        finally:
            cluster.stop()
    else:
        with RedisServer() as server:
            yield server.url, False


@pytest_asyncio.fixture
async def model(anthropic_standin: AnthropicStandin) -> Model:
    return Model(anthropic_standin)


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        yield s


@pytest_asyncio.fixture
async def workers(standin: SlackStandin, anthropic_standin: AnthropicStandin,
                  redis_target: tuple[str, bool]) -> AsyncIterator[Callable[..., Any]]:
    started: list[Worker] = []

    async def start(count: int = 2, **extra: str) -> list[Worker]:
        url, cluster = redis_target
        env = worker_env(url, standin.base_url, anthropic_standin.base_url, cluster=cluster, **extra)
        new = [Worker(f"w{len(started) + i}", env).start() for i in range(count)]
        started.extend(new)
        await asyncio.gather(*(w.ready() for w in new))
        return new

    yield start
    for w in started:
        w.close()


def answers(standin: SlackStandin, root: str) -> collections.Counter[str]:
    """How many times each member text was answered in the thread, as members see it."""
    return collections.Counter(t[len(ANSWER):] for t in thread_texts(standin, root) if t.startswith(ANSWER))


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def no_tracebacks(*ws: Worker) -> None:
    for w in ws:
        assert "Traceback" not in w.log(), w.log()[-3000:]


@pytest.mark.parametrize("redis_target", [pytest.param("server", id="server"),
                                          pytest.param("cluster", id="cluster", marks=pytest.mark.cluster)],
                         indirect=True)
async def test_sigkill_of_the_owner_mid_model_call(workers, model, standin, session, payloads: Payloads):
    a, b = await workers(2)
    mention = payloads.mention("hello")
    root = mention["event"]["ts"]
    assert await post_event(session, a.url, mention) == 200
    await until(lambda: answers(standin, root)["hello"], 15, "the opening answer")

    model.slow["slow one"] = 60.0  # A's model call hangs until A is killed
    slow = payloads.message("slow one", root)
    assert await post_event(session, a.url, slow) == 200
    await until(lambda: "slow one" in model.order(), 10, "A's model call")
    later = [payloads.message(f"later {i}", root) for i in range(3)]
    for event in later:  # accepted by B while A owns the thread: they wait in the inbox, in order
        assert await post_event(session, b.url, event) == 200

    a.kill()
    killed = time.monotonic()
    await until(lambda: answers(standin, root)["slow one"], 15, "the interrupted message's answer")
    recovered = time.monotonic() - killed
    # Slack redelivers the interrupted event (A never answered): accepted once, not answered again
    assert await post_event(session, b.url, slow, retry_num=1) == 200
    await until(lambda: all(answers(standin, root)[f"later {i}"] for i in range(3)), 15, "the later answers")
    await asyncio.sleep(1.0)

    shown = answers(standin, root)
    assert shown == {"hello": 1, "slow one": 1, "later 0": 1, "later 1": 1, "later 2": 1}, shown
    after_kill = [t for t in model.order() if t != "hello"]
    assert after_kill == ["slow one", "slow one", "later 0", "later 1", "later 2"], after_kill
    assert recovered < 15
    print(f"interrupted message answered {recovered:.1f} s after SIGKILL")
    no_tracebacks(b)


@pytest.mark.parametrize("redis_target", ["server"], indirect=True)
async def test_twenty_messages_at_once_through_two_workers_keep_arrival_order(workers, model, standin, session,
                                                                              payloads: Payloads):
    a, b = await workers(2)
    mention = payloads.mention("start")
    root = mention["event"]["ts"]
    assert await post_event(session, a.url, mention) == 200
    await until(lambda: answers(standin, root)["start"], 15, "the opening answer")
    model.delay = 0.05
    texts = [f"message {i:02d}" for i in range(20)]
    for i, text in enumerate(texts):  # each acknowledged (accepted) before the next is sent
        assert await post_event(session, (a, b)[i % 2].url, payloads.message(text, root)) == 200
    await until(lambda: sum(answers(standin, root)[t] for t in texts) == 20, 60, "20 answers")
    order = [t for t in model.order() if t in texts]
    inversions = sum(1 for i in range(len(order)) for j in range(i + 1, len(order)) if order[i] > order[j])
    assert inversions == 0 and order == texts, order
    assert all(answers(standin, root)[t] == 1 for t in texts)
    # the model's history of the last turn holds every earlier message, in order
    last = next(body for body in reversed(model.standin.bodies) if newest_user_text(body) == texts[-1])
    history = [m["content"][0]["text"] for m in last["messages"] if m["role"] == "user"]
    assert history == ["start", *texts], history
    no_tracebacks(a, b)


@pytest.mark.parametrize("redis_target", ["server"], indirect=True)
async def test_a_mention_and_nineteen_replies_at_once_across_two_workers(workers, model, standin, session,
                                                                         payloads: Payloads):
    a, b = await workers(2)
    mention = payloads.mention("opening")
    root = mention["event"]["ts"]
    replies = [payloads.message(f"reply {i:02d}", root) for i in range(19)]
    events = [mention, *replies]
    statuses = await asyncio.gather(*(post_event(session, (a, b)[i % 2].url, e) for i, e in enumerate(events)))
    assert set(statuses) == {200}
    texts = ["opening", *(f"reply {i:02d}" for i in range(19))]
    await until(lambda: sum(answers(standin, root)[t] for t in texts) == 20, 60, "20 answers")
    assert all(answers(standin, root)[t] == 1 for t in texts)
    assert model.order()[0] == "opening"
    no_tracebacks(a, b)


@pytest.mark.parametrize("redis_target", ["server"], indirect=True)
async def test_replies_in_threads_the_bot_is_not_part_of_stay_unanswered(workers, model, standin, session,
                                                                         payloads: Payloads):
    (a,) = await workers(1)
    root = payloads.ts()
    for i in range(3):
        assert await post_event(session, a.url, payloads.message(f"aside {i}", root, channel=CHANNEL)) == 200
    await asyncio.sleep(1.5)
    assert model.order() == [] and thread_texts(standin, root) == []
