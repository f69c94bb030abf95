"""The wake-up channel (``keys.WAKE``) the background loops of every process wait on, so an idle process
sends Redis next to nothing. What gives the loops work says so on it, in the same script or request that
writes it: a due set whose first due time moved earlier (``scripts.DUE``), a notice queued, settings saved,
an end whose case waits for its number, the model API's back-off. Each process listens on one connection.

A published word reaches only those listening at that moment: each time the subscription is made (again),
``connected(True)`` tells the loops to look at everything once, which covers what was said while it was
down. A subscription quiet for ``check_every`` seconds is checked by publishing ``echo`` and waiting for a
word (anyone's); one that no longer delivers is replaced. On Redis Cluster a word published on any node
reaches the subscribers of every node, so the subscription may be on any: another is tried when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster

from bot.store import WakeUp, keys

log = logging.getLogger(__name__)

#: Seconds of silence after which the subscription is checked (an ``echo`` published and waited for).
CHECK_EVERY = 30.0
#: Seconds the echo may take before the subscription counts as lost.
ECHO_WAIT = 5.0
#: Seconds between two tries to subscribe again (doubling from ``RETRY_FIRST``).
RETRY_FIRST, RETRY_MAX = 0.1, 2.0


def parse(data: Any) -> WakeUp | None:
    """A word as published (``due slack 9 1700000000000``, ``notice discord``, ``settings``, …)."""
    parts = str(data).split()
    try:
        if parts[0] == "due":
            return WakeUp("due", parts[1], int(parts[3]), int(parts[2]))
        if parts[0] == "notice":
            return WakeUp("notice", parts[1])
        if parts[0] == "backoff":
            return WakeUp("backoff", at_ms=int(parts[1]))
        return WakeUp(parts[0])
    except (IndexError, ValueError):
        return None


class _Deaf(Exception):
    """The subscription delivers nothing, not even an echo."""


class RedisWakeUps:
    """``WakeUps`` on the store's client (one server, Redis Cluster, or the in-process Redis)."""

    def __init__(self, client: Any, *, check_every: float = CHECK_EVERY, echo_wait: float = ECHO_WAIT) -> None:
        self.client = client
        self.check_every = check_every
        self.echo_wait = echo_wait
        #: Subscriptions made: for tests and logs.
        self.subscriptions = 0
        self._node_turn = 0

    async def listen(self, heard: Callable[[WakeUp], None], connected: Callable[[bool], None]) -> None:
        delay = RETRY_FIRST
        lost_logged = False
        while True:
            pubsub: Any = None
            listening = False
            try:
                pubsub = await self._subscribe()
                listening = True
                self.subscriptions += 1
                if lost_logged:
                    log.info("the wake-up channel is heard again")
                    lost_logged = False
                connected(True)
                delay = RETRY_FIRST
                await self._read(pubsub, heard, connected)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone, a node failed over, a subscription that went deaf
                if not lost_logged:
                    log.warning("the wake-up channel is not heard (%s): the background loops poll until it is",
                                type(exc).__name__)
                    lost_logged = True
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            if listening:
                connected(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _subscribe(self) -> Any:
        """A subscription to ``keys.WAKE``, confirmed by the server."""
        pubsub = await self._pubsub()
        try:
            await pubsub.subscribe(keys.WAKE)
            async with asyncio.timeout(self.echo_wait):
                while True:
                    message = await pubsub.get_message(timeout=self.echo_wait)
                    if message is not None and message.get("type") == "subscribe":
                        return pubsub
        except BaseException:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            raise

    async def _pubsub(self) -> Any:
        if not isinstance(self.client, RedisCluster):
            return self.client.pubsub()
        nodes = self.client.get_nodes()
        if not nodes:
            await self.client.initialize()
            nodes = self.client.get_nodes()
        self._node_turn += 1  # after a failure, the next node
        return self.client.pubsub(node=nodes[self._node_turn % len(nodes)])

    async def _read(self, pubsub: Any, heard: Callable[[WakeUp], None], connected: Callable[[bool], None]) -> None:
        """Every word to ``heard`` until the subscription fails (raises). redis-py makes a subscription again
        by itself after its connection dropped while Redis stays up (words said meanwhile are lost): its new
        confirmation counts as a subscription made again."""
        loop = asyncio.get_running_loop()
        last_word = loop.time()
        echo_at: float | None = None
        quiet = self._quiet()
        while True:
            now = loop.time()
            left = (echo_at + self.echo_wait if echo_at is not None else last_word + quiet) - now
            message = await pubsub.get_message(timeout=max(left, 0.01))
            if message is not None and message.get("type") == "subscribe":
                self.subscriptions += 1
                log.info("the wake-up channel was subscribed again")
                last_word, echo_at = loop.time(), None
                connected(True)
                continue
            if message is not None and message.get("type") == "message":
                last_word, echo_at, quiet = loop.time(), None, self._quiet()
                word = parse(message.get("data"))
                if word is not None and word.kind != "echo":
                    heard(word)
                continue
            now = loop.time()
            if echo_at is not None and now >= echo_at + self.echo_wait:
                raise _Deaf
            if echo_at is None and now >= last_word + quiet:
                await self.client.publish(keys.WAKE, "echo")
                echo_at = now

    def _quiet(self) -> float:
        """Seconds of silence before an echo, a little different each time: the processes that heard the same
        last word do not all echo at once (the first echo is heard by all)."""
        return self.check_every * random.uniform(0.8, 1.0)
