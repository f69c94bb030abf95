"""Deleting everything a community left behind: what ``threadguard forget-community`` does once a
workspace uninstalled the app (its cases are kept until then, for their retention period).

Gone: every key of the community's slot (``tg:{c:C}:…``: cases, their index and numbering, review state,
appeals, members' end history, usage sums), every key of its threads (``tg:{t:<platform>:C:…}:…``), its
threads' places in the due sets and the pending-case index, its ``chat.update`` budget, the link of a
Slack team to its installation, and its name in the lists of communities. Other communities' keys are
never touched. The same code runs on one server, on Redis Cluster (every primary is scanned) and on the
in-process Redis.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster

from bot.errors import StoreUnavailable
from bot.store import keys
from bot.store.errors import STORE_FAILURES

_USAGE_COMMUNITIES = f"{keys.PREFIX}:usage:communities"


@dataclass
class CommunityForgotten:
    keys_deleted: int = 0
    threads: int = 0
    cases: int = 0


def _glob(text: str) -> str:
    """``text`` with the glob characters of a SCAN pattern escaped."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


async def _scan(client: Any, match: str) -> AsyncIterator[str]:
    if isinstance(client, RedisCluster):
        iterator = client.scan_iter(match=match, count=500, target_nodes=RedisCluster.PRIMARIES)
    else:
        iterator = client.scan_iter(match=match, count=500)
    seen: set[str] = set()
    async for key in iterator:
        if key not in seen:
            seen.add(key)
            yield key


async def forget_community(client: Any, community: str) -> CommunityForgotten:
    """Delete every trace of ``community``; returns what went."""
    if not community or ":" in community:
        raise ValueError("expected a community id (a Slack team id, a Discord guild id, or local)")
    report = CommunityForgotten()
    c = _glob(community)
    try:
        report.cases = int(await client.zcard(keys.case_index(community)))
        thread_keys: set[str] = set()
        async for key in _scan(client, f"{keys.PREFIX}:{{t:*:{c}:*}}:*"):
            tag = key[len(f"{keys.PREFIX}:{{t:"):key.index("}")]
            if tag.split(":", 2)[1] == community:
                thread_keys.add(tag)
                report.keys_deleted += int(await client.delete(key))
        report.threads = len(thread_keys)
        for pattern in (f"{keys.PREFIX}:{{c:{c}}}:*", f"{keys.PREFIX}:{{w:{c}}}:*",
                        f"{keys.PREFIX}:{{team:{c}}}:*"):
            async for key in _scan(client, pattern):
                report.keys_deleted += int(await client.delete(key))
        await _drop_from_indexes(client, thread_keys)
        await client.srem(keys.COMMUNITIES, community)
        await client.srem(_USAGE_COMMUNITIES, community)
    except STORE_FAILURES as exc:
        raise StoreUnavailable(f"forget-community failed: {type(exc).__name__}") from exc
    return report


async def _drop_from_indexes(client: Any, thread_keys: set[str]) -> None:
    """The community's threads leave their due set and the index of threads with pending cases."""
    for thread_key in thread_keys:
        await client.zrem(keys.due(thread_key), thread_key)
        await client.srem(keys.pending_index(thread_key), thread_key)
