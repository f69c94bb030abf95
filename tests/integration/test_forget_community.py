"""``forget-community``: a community's cases, conversations and indexes go, every other community's
keys stay byte for byte (one server, a 3-node cluster, the in-process Redis); then the CLI command."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.store import keys
from bot.store.forget_community import forget_community
from bot.types import ThreadRef
from tests.integration.test_retention import ALICE, _all_keys, _cli, _dump, _end_by_abuse, _runtime, _say

pytestmark = pytest.mark.timeout(60)


async def test_forgetting_a_community_deletes_its_keys_and_no_one_elses(any_redis: Any):
    rt = _runtime(any_redis)
    await _end_by_abuse(rt, ThreadRef("slack", "TGONE", "C1", "1.0"))
    await _say(rt, ThreadRef("slack", "TGONE", "C1", "2.0"), ALICE, "hello")
    await _end_by_abuse(rt, ThreadRef("slack", "TKEEP", "C1", "1.0"))
    await _say(rt, ThreadRef("slack", "TKEEP", "C2", "3.0"), ALICE, "hello")
    await any_redis.set(f"{keys.PREFIX}:{{team:TGONE}}:installation", "E1:TGONE")
    before = {k: await _dump(any_redis, k) for k in await _all_keys(any_redis)}
    kept = {k: v for k, v in before.items() if "TGONE" not in k + str(v)}  # shared indexes lose an item only

    report = await forget_community(any_redis, "TGONE")

    assert report.cases == 1 and report.threads == 2 and report.keys_deleted > 0
    after = await _all_keys(any_redis)
    assert not [k for k in after if "TGONE" in k]
    assert "TGONE" not in await any_redis.smembers(keys.COMMUNITIES)
    for key in after:  # indexes keep only the other community's threads
        assert "TGONE" not in str(await _dump(any_redis, key))
    assert {k: await _dump(any_redis, k) for k in kept} == kept
    assert [c.community for c in await rt.cases.list(None, limit=10)] == ["TKEEP"]
    with pytest.raises(ValueError):
        await forget_community(any_redis, "slack:TKEEP")


async def test_the_cli_asks_then_forgets(redis_server: Any, redis_client: Any):
    rt = _runtime(redis_client)
    await _end_by_abuse(rt, ThreadRef("slack", "TGONE", "C1", "1.0"))
    refused = await asyncio.to_thread(_cli, redis_server.url, "forget-community", "TGONE", stdin="n\n")
    assert refused.exit_code == 1 and await rt.cases.list("TGONE", limit=5)
    done = await asyncio.to_thread(_cli, redis_server.url, "forget-community", "TGONE", "--yes")
    assert done.exit_code == 0, done.output
    assert "Deleted 1 cases and 1 conversations of TGONE" in done.output
    assert await rt.cases.list("TGONE", limit=5) == []
