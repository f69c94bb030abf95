"""The product's Redis clients use the store's connection (C packing, direct sends) on one server and on
every node of a Redis Cluster, and commands go through it intact."""

from __future__ import annotations

from bot.store.connection import _Connection, connect


async def test_one_server_client_uses_the_store_connection(redis_server):
    client = connect(redis_server.url)
    try:
        assert await client.set("conn:ü", "☃ value") and await client.get("conn:ü") == "☃ value"
        assert client.connection_pool.connection_class is _Connection
    finally:
        await client.aclose()


async def test_every_cluster_node_uses_the_store_connection(redis_cluster):
    client = connect(redis_cluster.url, cluster=True)
    try:
        for n in range(30):  # keys on every node
            await client.set(f"conn:{n}", f"v{n}")
        assert [await client.get(f"conn:{n}") for n in range(30)] == [f"v{n}" for n in range(30)]
        used = [conn for node in client.get_nodes() for conn in node._connections]
        assert len({node.port for node in client.get_nodes() if node._connections}) == 3
        assert used and all(type(conn) is _Connection for conn in used)
    finally:
        await client.aclose()
