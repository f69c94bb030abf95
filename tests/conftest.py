"""Shared fixtures: real Redis servers (single and cluster), the in-process Redis, the Messages API stand-in.

- ``redis_server`` / ``redis_cluster``: session-scoped processes on free loopback ports (the cluster only
  starts when a test asks for it). Tests that stop Redis mid-test use ``private_redis_server``.
- ``redis_client`` / ``cluster_client`` / ``fake_redis_client``: fresh, emptied clients per test
  (``decode_responses=True``, as the store uses them).
- ``any_redis``: the same test on all three (``server``, ``cluster``, ``inprocess``); the cluster case
  carries the ``cluster`` mark, so ``-m "not cluster"`` skips it.
- ``anthropic_standin``: a running local Messages API (see ``tests/support/anthropic_standin.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import pytest
import pytest_asyncio
import redis.asyncio
import redis.asyncio.cluster

from tests.support.anthropic_standin import AnthropicStandin
from tests.support.redis_servers import RedisCluster, RedisServer, sweep_orphans


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the cluster fixtures directly get the ``cluster`` mark too."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "redis_cluster" in names or "cluster_client" in names:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    sweep_orphans()
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    sweep_orphans()
    cluster = RedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def private_redis_server() -> Iterator[RedisServer]:
    """A server of this test alone: stop it and ``start()`` it again on the same port at will."""
    with RedisServer() as server:
        yield server


@pytest_asyncio.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    if not redis_server.running:  # an earlier test stopped the shared server
        redis_server.start()
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    await client.script_flush()
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def cluster_client(redis_cluster: RedisCluster) -> AsyncIterator[redis.asyncio.cluster.RedisCluster]:
    client = redis.asyncio.cluster.RedisCluster(startup_nodes=redis_cluster.startup_nodes,
                                                decode_responses=True)
    primaries = redis.asyncio.cluster.RedisCluster.PRIMARIES
    await client.flushall(target_nodes=primaries)
    await client.script_flush()  # routed to every primary
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def fake_redis_client() -> AsyncIterator[Any]:
    """``fakeredis`` with a server of its own (instances otherwise share data by host and port)."""
    client = fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


_ANY_REDIS = {"server": "redis_client", "cluster": "cluster_client", "inprocess": "fake_redis_client"}


@pytest.fixture(params=[
    pytest.param("server", id="server"),
    pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
    pytest.param("inprocess", id="inprocess"),
])
def any_redis(request: pytest.FixtureRequest) -> Any:
    """The matching client; ``request.node.callspec.params["any_redis"]`` says which one."""
    return request.getfixturevalue(_ANY_REDIS[request.param])


@pytest_asyncio.fixture
async def anthropic_standin() -> AsyncIterator[AnthropicStandin]:
    standin = AnthropicStandin()
    await standin.start()
    try:
        yield standin
    finally:
        await standin.stop()
