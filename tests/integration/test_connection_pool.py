"""More Redis users at once than the process's pool has connections (``REDIS_MAX_CONNECTIONS``), with the
client built as the product builds it: they wait for a free connection instead of failing with
``MaxConnectionsError``, on one server and on a Redis Cluster. When none comes free in time
(``REDIS_POOL_TIMEOUT``), a member's message fails with the plain line about the storage, and nothing of
it is stored: sent again, it is answered once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from bot.bootstrap import Runtime, build_runtime
from bot.errors import StoreUnavailable
from bot.model import TextBlock
from bot.store import keys
from bot.store.budget import Rate, SharedBudget
from bot.types import Author, IncomingMessage, ReplyKind, ThreadRef
from config.communities import Communities, CommunityConfig
from config.settings import PipelineSettings, RedisSettings, Settings
from tests.integration.engine_helpers import CollectingSink
from tests.integration.scripted_model import ScriptedModel

POOL = 8


def connections(runtime: Runtime) -> int:
    """The most connections the runtime's client holds to one Redis server."""
    client = runtime.redis
    if runtime.store.health.cluster:  # type: ignore[attr-defined]
        return max(len(node._connections) for node in client.get_nodes())
    pool = client.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


@pytest_asyncio.fixture(params=["server", pytest.param("cluster", marks=pytest.mark.cluster)])
async def runtime(request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    cluster = request.param == "cluster"
    target = request.getfixturevalue("redis_cluster" if cluster else "redis_server")
    settings = Settings(redis=RedisSettings(url=target.url, cluster=cluster, max_connections=POOL, pool_timeout=5),
                        pipeline=PipelineSettings(max_active_threads=500))
    model = ScriptedModel(lambda text: [TextBlock(f"answer to {text}")], delay=0.02)
    rt = build_runtime(settings, model=model, communities=Communities(CommunityConfig()))
    rt.pipeline.register_sink("slack", CollectingSink())
    if cluster:  # the servers are shared with other tests: start from nothing
        await rt.redis.flushall(target_nodes=rt.redis.PRIMARIES)
    else:
        await rt.redis.flushall()
    try:
        yield rt
    finally:
        await rt.aclose()


def message(n: int, text: str = "hello") -> IncomingMessage:
    thread = ThreadRef("slack", "TPOOL", "CPOOL", f"1700000000.{n:06d}")
    return IncomingMessage(thread, Author(f"u{n}", f"member {n}"), f"{text} {n}", message_id=f"m{n}")


async def test_two_hundred_threads_and_their_reply_budgets_share_eight_connections(runtime: Runtime,
                                                                                  caplog: Any) -> None:
    caplog.set_level(logging.WARNING)
    budget = SharedBudget(runtime.redis, {"chat.update": Rate(100_000, 1_000)})

    async def spend(n: int) -> float:
        return await budget.spend(f"T{n % 7}", "chat.update")

    outcomes, waits = await asyncio.gather(
        asyncio.gather(*(runtime.member_actions.handle_message(message(n)) for n in range(200))),
        asyncio.gather(*(spend(n) for n in range(400))))
    assert [o.replies[0].kind for o in outcomes] == [ReplyKind.ANSWER] * 200
    assert [o.replies[0].text for o in outcomes] == [f"answer to hello {n}" for n in range(200)]
    assert waits == [0.0] * 400  # every spend went through Redis, none fell back for want of a connection
    assert connections(runtime) <= POOL
    assert "MaxConnectionsError" not in caplog.text and "failed" not in caplog.text, caplog.text


async def test_no_connection_in_time_tells_the_member_and_stores_nothing(runtime: Runtime) -> None:
    holders = [runtime.redis.blpop([f"{keys.PREFIX}:test:hold:{{h}}:{i}"], timeout=4) for i in range(POOL)]
    held = asyncio.gather(*holders)
    await asyncio.sleep(0.3)  # every connection is now taken by a blocking read
    _set_pool_timeout(runtime, 0.2)
    msg = message(1001, "still there?")
    outcome = await runtime.member_actions.handle_message(msg)
    assert [(r.kind, r.text) for r in outcome.replies] == [(ReplyKind.ERROR, StoreUnavailable.user_message)]
    await held
    _set_pool_timeout(runtime, 5)
    inbox = await runtime.redis.lrange(keys.inbox(msg.thread.key), 0, -1)
    assert inbox == []  # nothing of it was stored
    again = await runtime.member_actions.handle_message(msg)  # the member sends it again: answered, once
    assert [(r.kind, r.text) for r in again.replies] == [(ReplyKind.ANSWER, "answer to still there? 1001")]


def _set_pool_timeout(runtime: Runtime, seconds: float) -> None:
    client = runtime.redis
    if runtime.store.health.cluster:  # type: ignore[attr-defined]
        client._gate.timeout = seconds
    else:
        client.connection_pool.timeout = seconds
