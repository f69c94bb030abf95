"""The one Redis connection every part of the store shares (``bot.store.redis_store`` builds the parts).

``connect`` builds the client (a server, a Redis Cluster, or the in-process Redis) with a bounded pool
of connections that a request waits on (up to a timeout) when every one is busy; ``RedisConnection`` sends
requests on it: each counted, and a failure of the store raised as ``StoreUnavailable``. It is also the
store's health role (``ping``, ``writable``, ``aclose``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.errors import StoreRefusingWrites, StoreUnavailable
from bot.metrics import Metrics
from bot.store import keys
from bot.store.errors import STORE_FAILURES, WRITE_REFUSALS

log = logging.getLogger(__name__)

#: Connections a process opens to Redis unless told (``REDIS_MAX_CONNECTIONS``), and how long a request waits
#: for one when all are busy (``REDIS_POOL_TIMEOUT``).
MAX_CONNECTIONS = 100
POOL_TIMEOUT = 5.0


try:  # hiredis's C command packer, which redis-py's synchronous client uses and its asyncio client does not
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency; without it, redis-py's own packer
    _hiredis_pack = None  # type: ignore[assignment]

#: Argument types hiredis packs exactly as redis-py's encoder does (floats and the rest go redis-py's way).
_PLAIN_ARGS = frozenset((str, bytes, int))


class _Connection(aioredis.Connection):
    """redis-py's connection, packing a command in C and sending it straight away when it fits the buffer.

    With a socket timeout set, redis-py wraps every send in ``asyncio.wait_for``, which on Python 3.11 runs
    it as a task of its own: three event-loop passes per command, though such a send never waits. Only a
    send that could wait (a connection to open, data still buffered) goes the timed way. A script call
    carries 20 to 30 arguments, which redis-py's asyncio packer encodes one by one in Python.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if _hiredis_pack is None or not args or type(args[0]) is not str \
                or not _PLAIN_ARGS.issuperset(map(type, args)):
            return super().pack_command(*args)
        return [_hiredis_pack((*args[0].encode().split(), *args[1:]))]

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        writer = getattr(self, "_writer", None)  # redis-py's own attributes: any other shape goes its way
        if (writer is None or getattr(self, "_reader", None) is None or self.health_check_interval
                or writer.transport.is_closing() or writer.transport.get_write_buffer_size()):
            await super().send_packed_command(command, check_health)
            return
        if isinstance(command, str):
            command = command.encode()
        writer.writelines([command] if isinstance(command, bytes) else command)


class _Gate:
    """Requests in flight at once on a Redis Cluster client, which has no blocking pool: its nodes raise
    ``MaxConnectionsError`` when they run out. Each request holds at most one connection per node, so
    ``size`` requests never need more than ``size`` connections to any node; past them a request waits for
    a place, for ``timeout`` seconds at most."""

    __slots__ = ("_places", "timeout")

    def __init__(self, size: int, timeout: float) -> None:
        self._places = asyncio.Semaphore(size)
        self.timeout = timeout

    async def __aenter__(self) -> None:
        if not self._places.locked():
            await self._places.acquire()  # a free place: taken without waiting
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self._places.acquire()
        except TimeoutError:
            raise MaxConnectionsError(f"no Redis connection free within {self.timeout:g} s") from None

    async def __aexit__(self, *exc: object) -> None:
        self._places.release()


class _GatedPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        async with self._client._gate:  # type: ignore[attr-defined]
            return await super().execute(raise_on_error, allow_redirections)


class _GatedCluster(RedisCluster):
    """redis-py's cluster client whose commands and pipelines wait at a ``_Gate`` for a place."""

    _gate: _Gate

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._gate:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused by redis-py, as it says
        return _GatedPipeline(self, transaction)  # type: ignore[abstract]  # as redis-py builds its own


#: Connections a cluster node may open beyond the gate's places: the wake-up subscription, a topology refresh.
_NODE_SPARE = 2


def connect(url: str | None, *, cluster: bool = False, max_connections: int = MAX_CONNECTIONS,
            pool_timeout: float = POOL_TIMEOUT) -> Any:
    """A Redis client for ``url``; without a URL, the in-process Redis that speaks the same protocol. At most
    ``max_connections`` requests use connections at once; more wait up to ``pool_timeout`` seconds for one,
    then fail (``redis.exceptions.ConnectionError``, which the store reports as unreachable)."""
    if url is None:
        return _in_process_redis()
    # No health-check PING before a command on a connection that sat idle (it would add a round trip to
    # the first turn after every quiet spell): a connection found dead is replaced and the command
    # retried. A script call that fails on a dead connection was never run, so retrying it is safe.
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
    if cluster:
        client = cast(_GatedCluster, _GatedCluster.from_url(
            url, decode_responses=True, retry=retry, socket_timeout=5, socket_connect_timeout=2,
            max_connections=max_connections + _NODE_SPARE))
        client._gate = _Gate(max_connections, pool_timeout)
        # The cluster client takes no connection class of its own: its nodes are built from one shared
        # kwargs dict (the start-up nodes already exist, with no connection open yet).
        shared = getattr(client, "connection_kwargs", None)
        if isinstance(shared, dict) and shared.get("connection_class") is aioredis.Connection:
            shared["connection_class"] = _Connection
            for node in getattr(client, "startup_nodes", ()):
                if getattr(node, "connection_class", None) is aioredis.Connection:
                    node.connection_class = _Connection
        return client
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=pool_timeout, decode_responses=True, retry=retry,
        socket_timeout=5, socket_connect_timeout=2, health_check_interval=0,
        retry_on_error=[RedisConnectionError, RedisTimeoutError], connection_class=_Connection)
    server = aioredis.Redis(connection_pool=pool)
    server.auto_close_connection_pool = True  # closing the client closes its pool, as with ``from_url``
    return server


def _in_process_redis() -> Any:
    """fakeredis, imported only when used, and without numpy: fakeredis loads it when it is installed,
    for vector sets threadguard never uses, and it would cost the console a tenth of a second to start."""
    blocked = "numpy" not in sys.modules
    if blocked:
        sys.modules["numpy"] = None  # type: ignore[assignment]  # makes "import numpy" fail fast
    try:
        import fakeredis
    finally:
        if blocked:
            del sys.modules["numpy"]
    return fakeredis.aioredis.FakeRedis(decode_responses=True)


class _Trip:
    """One request: counted, and a failure of the store raised as ``StoreUnavailable`` (a burst waits for a
    connection in the client's pool instead of failing for want of one: ``connect``)."""

    __slots__ = ("connection", "what")

    def __init__(self, connection: RedisConnection, what: str) -> None:
        self.connection = connection
        self.what = what

    async def __aenter__(self) -> None:
        self.connection.round_trips += 1
        self.connection.sequential += 1

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, STORE_FAILURES):
            log.warning("redis %s failed: %s", self.what, type(exc).__name__)
            self.connection.metrics.store_error(self.what)
            if isinstance(exc, WRITE_REFUSALS):
                raise StoreRefusingWrites(f"redis {self.what} refused a write") from exc
            raise StoreUnavailable(f"redis {self.what} failed") from exc


class RedisConnection:
    """``client`` (any redis-py asyncio client, or fakeredis) as the store's parts use it."""

    def __init__(self, client: Any, *, metrics: Metrics) -> None:
        self.client = client
        #: On Redis Cluster the due sets, the pending-case index and the community's usage live in other
        #: slots than the thread, so they cannot be written by the thread's scripts.
        self.cluster = isinstance(client, RedisCluster)
        #: Told about every failed request (the metrics of a long-running process).
        self.metrics = metrics
        #: Requests sent to Redis (a script call or a pipeline counts once): for benchmarks.
        self.round_trips = 0
        #: Round trips one after another: requests sent at the same time (to other slots of a Redis Cluster)
        #: count once here, each in ``round_trips``.
        self.sequential = 0

    def trip(self, what: str) -> _Trip:
        """``async with connection.trip("what"):`` around one request."""
        return _Trip(self, what)

    def script(self, lua: str) -> Any:
        return self.client.register_script(lua)

    async def run(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """A registered script by its SHA (loaded first on a server that lacks it)."""
        try:
            return await self.client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await script(keys=keys, args=args)

    async def ping(self) -> float:
        start = time.perf_counter()
        async with self.trip("ping"):
            await self.client.ping()
        return time.perf_counter() - start

    async def writable(self) -> None:
        """One small write that expires at once: raises ``StoreRefusingWrites`` when Redis answers but refuses
        writes (out of memory under ``noeviction``, a read-only replica), ``StoreUnavailable`` when it is gone."""
        async with self.trip("write probe"):
            await self.client.set(keys.WRITE_PROBE, "1", px=1000)

    async def aclose(self) -> None:
        close = getattr(self.client, "aclose", None) or self.client.close
        await close()
