"""The Redis installation store and OAuth state store behind Bolt's install flow, on one server, a Redis
Cluster and the in-process Redis: slack_sdk's find/delete semantics, tokens encrypted at rest, one-use
states, the cache dropped by another process's change, and token renewal by one process at a time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from cryptography.fernet import Fernet
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.installations import RedisInstallationStore, RedisStateStore, TokenCipher
from adapters.slack.workspaces import Tokens
from bot.errors import ConfigurationError, StoreUnavailable
from bot.store.installations import InstallationRecords, InstallStates
from tests.support.slack_standin import CLIENT_ID, CLIENT_SECRET, SlackStandin

KEY = Fernet.generate_key().decode()


def store(client: Any, key: str = KEY, cache: float = 5.0) -> RedisInstallationStore:
    return RedisInstallationStore(InstallationRecords(client), TokenCipher(key), cache_seconds=cache)


def installation(team: str | None = "T1", user: str = "U1", *, bot_token: str = "xoxb-T1-secret",
                 enterprise: str | None = None, org: bool = False, **extra: Any) -> Installation:
    return Installation(app_id="A1", enterprise_id=enterprise, team_id=team, user_id=user, bot_token=bot_token,
                        bot_id="B1", bot_user_id="UB1", bot_scopes="chat:write,commands",
                        user_token=f"xoxp-{user}-secret", is_enterprise_install=org, **extra)


async def all_values(client: Any) -> str:
    """Every key and value in the database, as one string (to look for secrets in it)."""
    out: list[str] = []
    async for key in client.scan_iter(match="*"):
        out.append(key)
        kind = await client.type(key)
        if kind == "string":
            out.append(str(await client.get(key)))
        elif kind == "hash":
            out.extend(f"{k}={v}" for k, v in (await client.hgetall(key)).items())
        elif kind == "list":
            out.extend(await client.lrange(key, 0, -1))
        elif kind == "set":
            out.extend(await client.smembers(key))
        elif kind == "zset":
            out.extend(await client.zrange(key, 0, -1))
    return "\n".join(out)


async def test_found_as_slack_sdk_stores_find_them_and_deleted_as_they_delete(any_redis):
    s = store(any_redis)
    await s.async_save(installation(user="U1", bot_token="xoxb-first"))
    await s.async_save(installation(user="U2", bot_token="xoxb-second"))

    latest = await s.async_find_installation(enterprise_id=None, team_id="T1")
    assert latest is not None and latest.user_id == "U2" and latest.bot_token == "xoxb-second"
    first = await s.async_find_installation(enterprise_id=None, team_id="T1", user_id="U1")
    assert first is not None and first.user_token == "xoxp-U1-secret"
    assert first.bot_token == "xoxb-second"  # a user's installation carries the workspace's latest bot token
    bot = await s.async_find_bot(enterprise_id=None, team_id="T1")
    assert isinstance(bot, Bot) and bot.bot_token == "xoxb-second" and bot.bot_user_id == "UB1"
    assert await s.async_find_installation(enterprise_id=None, team_id="T2") is None
    assert await s.records.installer("-:T1") == "U2"  # the workspace's first admin, for the dashboard

    await s.async_delete_installation(enterprise_id=None, team_id="T1", user_id="U1")
    assert await s.async_find_installation(enterprise_id=None, team_id="T1", user_id="U1") is None
    assert await s.async_find_installation(enterprise_id=None, team_id="T1") is not None
    await s.async_delete_bot(enterprise_id=None, team_id="T1")
    assert await s.async_find_bot(enterprise_id=None, team_id="T1") is None
    await s.async_delete_all(enterprise_id=None, team_id="T1")
    assert await s.async_find_installation(enterprise_id=None, team_id="T1") is None
    assert await s.async_find_installation(enterprise_id=None, team_id="T1", user_id="U2") is None
    assert [k async for k in any_redis.scan_iter(match="tg:{inst:*")] == []


async def test_org_wide_installations_are_kept_under_the_org(any_redis):
    s = store(any_redis)
    await s.async_save(installation(team=None, enterprise="E1", org=True, bot_token="xoxb-org"))
    await s.async_save(installation(team="T9", enterprise="E2", bot_token="xoxb-grid-team"))
    found = await s.async_find_installation(enterprise_id="E1", team_id="T5", is_enterprise_install=True)
    assert found is not None and found.bot_token == "xoxb-org"
    assert await s.async_find_installation(enterprise_id="E1", team_id="T5") is None  # not a per-team install
    assert await s.records.workspace_of("T9") == "E2:T9"  # deliveries find a Grid workspace's own install


async def test_tokens_are_encrypted_at_rest_and_need_the_key(any_redis):
    s = store(any_redis)
    await s.async_save(installation(bot_token="xoxb-T1-secret", bot_refresh_token="xoxe-1-refresh-secret",
                                    user_refresh_token="xoxe-1-user-refresh-secret"))
    stored = await all_values(any_redis)
    for secret in ("xoxb-T1-secret", "xoxp-U1-secret", "xoxe-1-refresh-secret", "xoxe-1-user-refresh-secret"):
        assert secret not in stored
    assert "UB1" in stored  # what is not secret stays readable

    rotated = store(any_redis, key=f"{Fernet.generate_key().decode()},{KEY}")  # a new key first; the old reads
    found = await rotated.async_find_installation(enterprise_id=None, team_id="T1")
    assert found is not None and found.bot_refresh_token == "xoxe-1-refresh-secret"
    with pytest.raises(StoreUnavailable):
        await store(any_redis, key=Fernet.generate_key().decode()).async_find_installation(enterprise_id=None,
                                                                                           team_id="T1")
    with pytest.raises(ConfigurationError):
        TokenCipher("not-a-key")


async def test_each_workspace_keys_share_one_slot(any_redis):
    s = store(any_redis)
    await s.async_save(installation(team="T1", user="U1"))
    slots = {key.split("}")[0] async for key in any_redis.scan_iter(match="tg:{inst:*")}
    assert slots == {"tg:{inst:-:T1"}


async def test_a_state_is_good_once_and_only_until_it_expires(any_redis):
    states = RedisStateStore(InstallStates(any_redis, ttl_seconds=1))
    state = await states.async_issue()
    assert await states.async_consume(state) is True
    assert await states.async_consume(state) is False  # replayed
    assert await states.async_consume("forged-state") is False
    assert await states.async_consume("") is False
    late = await states.async_issue()
    await asyncio.sleep(1.3)
    assert await states.async_consume(late) is False
    together = await states.async_issue()
    results = await asyncio.gather(*(states.async_consume(together) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]  # consumed atomically: one winner


async def test_another_process_change_drops_the_cached_installation(any_redis):
    one, other = store(any_redis, cache=60.0), store(any_redis, cache=60.0)
    await one.async_save(installation(bot_token="xoxb-old"))
    assert (await other.async_find_bot(enterprise_id=None, team_id="T1")).bot_token == "xoxb-old"  # cached now
    ready = asyncio.Event()
    follower = asyncio.create_task(other.records.follow_changes(other.forget_cached, ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        await one.async_delete_all(enterprise_id=None, team_id="T1")
        deadline = time.monotonic() + 2
        while await other.async_find_bot(enterprise_id=None, team_id="T1") is not None:
            assert time.monotonic() < deadline, "the other process kept the deleted installation"
            await asyncio.sleep(0.02)
    finally:
        follower.cancel()


async def test_an_expiring_token_is_renewed_once_whatever_the_number_of_processes(redis_client):
    standin = SlackStandin(token_rotation=True, token_lifetime=120)
    await standin.start()
    client = AsyncWebClient(base_url=standin.base_url)
    try:
        standin.add_workspace("T1")
        grant = standin._issue(standin.workspaces["T1"])
        s0 = store(redis_client)
        await s0.async_save(installation(bot_token=grant["access_token"], bot_refresh_token=grant["refresh_token"],
                                         bot_token_expires_in=30))  # within the renewal margin
        processes = [Tokens(store(redis_client), AsyncTokenRotator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                                                   client=client), refresh_before=60)
                     for _ in range(4)]
        tokens = await asyncio.gather(*(p.bot_token("T1") for p in processes for _ in range(3)))
        assert standin.refreshes == {"T1": 1}
        assert len(set(tokens)) == 1 and tokens[0] != grant["access_token"]
        assert (await processes[0].for_team("T1")).bot_token_expires_at > time.time() + 100
        assert "xoxe-1" not in await all_values(redis_client)  # the new refresh token is encrypted too
    finally:
        await standin.stop()
