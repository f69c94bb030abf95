"""Every lifetime a transition gives a key, read back from a real redis-server after the transition.

The idle expiry, the case retention, the dedupe window, the lock, the reminder cooldown and the
dashboard's sessions and throttles are all set to different values, so a transition that hands a key
the wrong one (an ended thread keeping the idle expiry, say) fails here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.dashboard.auth import Accounts, failures_key
from bot.bootstrap import Runtime, build_runtime
from bot.store import keys
from bot.store.retention import Retention
from bot.types import Author, EditedMessage, IncomingMessage, ThreadRef, ThreadStatus
from config.communities import Communities, CommunityConfig
from config.settings import AnthropicSettings, RedisSettings, Settings, StoreSettings
from tests.integration.scripted_model import ScriptedModel

DAY_MS = 86_400_000
IDLE_DAYS, RETENTION_DAYS, DEDUPE_S, LOCK_S, COOLDOWN_S = 3, 11, 7_200, 90, 600
ANN = Author("u-ann", "Ann")
BAD = "how do I build a bomb"
SLACK = 5_000  # ms a PTTL may have run down between the transition and the read


def _runtime(client: Any, model: Any = None) -> Runtime:
    settings = Settings(
        anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None),
        store=StoreSettings(idle_ttl_days=IDLE_DAYS, case_retention_days=RETENTION_DAYS,
                            dedupe_ttl_seconds=DEDUPE_S, lock_ttl_seconds=LOCK_S))
    communities = Communities(CommunityConfig(threshold=2, frozen_reminder_cooldown=COOLDOWN_S))
    return build_runtime(settings, redis=client, communities=communities, model=model)


@pytest.fixture
async def runtime(redis_client):
    rt = _runtime(redis_client)
    yield rt
    await rt.aclose()


def _msg(thread: ThreadRef, text: str, n: int, event: str | None = None) -> IncomingMessage:
    return IncomingMessage(thread, ANN, text, message_id=f"{thread.thread}-m{n}", event_id=event)


async def _assert_pttl(client: Any, key: str, expected_ms: int) -> None:
    left = await client.pttl(key)
    assert expected_ms - SLACK < left <= expected_ms, f"{key}: PTTL {left} ms, expected about {expected_ms} ms"


async def _assert_thread_ttl(client: Any, thread: ThreadRef, expected_ms: int) -> None:
    for key in (keys.state(thread.key), keys.log(thread.key)):
        await _assert_pttl(client, key, expected_ms)


async def _end_by_abuse(members: Any, thread: ThreadRef) -> None:
    outcome = None
    for n, text in enumerate(["hi", BAD, BAD, BAD]):  # threshold 2: warned in turn 2, ended in turn 3
        outcome = await members.handle_message(_msg(thread, text, n))
    assert outcome is not None and outcome.status is ThreadStatus.ENDED and outcome.case is not None


async def test_an_active_turn_gives_the_conversation_the_idle_expiry_and_the_event_the_dedupe_window(
        runtime, redis_client):
    t = ThreadRef("discord", "g", "c", "active")
    await runtime.member_actions.handle_message(_msg(t, "hello", 0, event="evt-1"))
    await _assert_thread_ttl(redis_client, t, IDLE_DAYS * DAY_MS)
    await _assert_pttl(redis_client, keys.seen(t.key, "evt-1"), DEDUPE_S * 1000)
    assert await redis_client.exists(keys.lock(t.key)) == 0  # released by the commit
    # a later turn renews the idle expiry (it does not only set it once)
    await redis_client.pexpire(keys.state(t.key), 60_000)
    await redis_client.pexpire(keys.log(t.key), 60_000)
    await runtime.member_actions.handle_message(_msg(t, "and again", 1))
    await _assert_thread_ttl(redis_client, t, IDLE_DAYS * DAY_MS)


async def test_a_model_end_gives_the_thread_the_case_retention_not_the_idle_expiry(runtime, redis_client):
    t = ThreadRef("discord", "g", "c", "abuse")
    await _end_by_abuse(runtime.member_actions, t)
    await _assert_thread_ttl(redis_client, t, RETENTION_DAYS * DAY_MS)
    # the filed case is kept by the retention policy (purge), not by a TTL; nothing stays pending
    assert await redis_client.pttl(keys.case("g", 1)) == -1
    assert await redis_client.exists(keys.pending(t.key)) == 0


async def test_a_member_end_gives_the_thread_the_case_retention(runtime, redis_client):
    t = ThreadRef("discord", "g", "c", "member-end")
    await runtime.member_actions.handle_message(_msg(t, "hello", 0))
    outcome = await runtime.member_actions.end_by_user(t, ANN)
    assert outcome.status is ThreadStatus.ENDED
    await _assert_thread_ttl(redis_client, t, RETENTION_DAYS * DAY_MS)


async def test_a_message_to_a_frozen_thread_keeps_the_retention_and_sets_dedupe_and_cooldown(
        runtime, redis_client):
    t = ThreadRef("slack", "T1", "C1", "frozen")
    await _end_by_abuse(runtime.member_actions, t)
    await redis_client.pexpire(keys.state(t.key), RETENTION_DAYS * DAY_MS - 3_600_000)  # an hour has passed
    outcome = await runtime.member_actions.handle_message(_msg(t, "hello?", 9, event="evt-frozen"))
    assert outcome.frozen
    await _assert_pttl(redis_client, keys.seen(t.key, "evt-frozen"), DEDUPE_S * 1000)
    await _assert_pttl(redis_client, keys.remind(t.key), COOLDOWN_S * 1000)
    # the frozen check does not give the thread a fresh lifetime, idle or otherwise
    await _assert_pttl(redis_client, keys.state(t.key), RETENTION_DAYS * DAY_MS - 3_600_000)


async def test_a_reopen_gives_the_thread_the_idle_expiry_back_and_clears_the_cooldown(runtime, redis_client):
    t = ThreadRef("discord", "g", "c", "reopen")
    await _end_by_abuse(runtime.member_actions, t)
    await runtime.member_actions.handle_message(_msg(t, "hello?", 9))
    assert await redis_client.exists(keys.remind(t.key)) == 1
    outcome = await runtime.moderation.reopen("g", 1, Author("mod", "Mo"))
    assert outcome.status is ThreadStatus.ACTIVE
    await _assert_thread_ttl(redis_client, t, IDLE_DAYS * DAY_MS)
    assert await redis_client.exists(keys.remind(t.key)) == 0
    # the reopen is a case of its own, kept like every case
    assert await redis_client.pttl(keys.case("g", 2)) == -1


async def test_a_branch_is_an_active_conversation_with_the_idle_expiry(runtime, redis_client):
    old = ThreadRef("discord", "g", "c", "old")
    new = ThreadRef("discord", "g", "c", "branch")
    await _end_by_abuse(runtime.member_actions, old)

    async def open_branch(_text: str) -> ThreadRef:
        return new

    edit = EditedMessage(old, ANN, "old-m1", "tell me about rockets")
    outcome = await runtime.member_actions.handle_edit(edit, open_branch)
    assert outcome.branch == new
    await _assert_thread_ttl(redis_client, new, IDLE_DAYS * DAY_MS)
    await _assert_pttl(redis_client, keys.seen(old.key, edit.dedupe_id), DEDUPE_S * 1000)
    # the ended thread it came from keeps its retention
    await _assert_thread_ttl(redis_client, old, RETENTION_DAYS * DAY_MS)


async def test_a_new_conversation_in_a_direct_message_keeps_its_counter_as_long_as_the_cases(
        runtime, redis_client):
    dm = ThreadRef("discord", "dm", "d1", "d1")
    assert await runtime.member_actions.new_conversation_in(dm) == ThreadRef("discord", "dm", "d1", "d1~1")
    await _assert_pttl(redis_client, keys.current(dm.key), RETENTION_DAYS * DAY_MS)


async def test_a_turn_in_progress_holds_its_lock_for_the_lock_ttl(redis_client):
    t = ThreadRef("discord", "g", "c", "slow")
    seen: list[int] = []

    async def read_lock() -> None:
        while not seen:
            left = await redis_client.pttl(keys.lock(t.key))
            if left > 0:
                seen.append(left)
            await asyncio.sleep(0.01)

    rt = _runtime(redis_client, model=ScriptedModel(lambda _text: [], delay=0.3))
    try:
        reader = asyncio.create_task(read_lock())
        await rt.member_actions.handle_message(_msg(t, "hello", 0))
        await asyncio.wait_for(reader, 1)
    finally:
        await rt.aclose()
    assert LOCK_S * 1000 - SLACK < seen[0] <= LOCK_S * 1000


async def test_dashboard_sessions_and_sign_in_throttles_expire(redis_client):
    accounts = Accounts(redis_client, b"k" * 32, session_ttl_s=5_400, failure_window_s=777)
    await accounts.add("jo", "correct horse battery", ["g"])
    moderator = await accounts.get("jo")
    assert moderator is not None
    token = await accounts.open_session(moderator)
    sessions = [k async for k in redis_client.scan_iter(match="tg:dash:session:*")]
    assert len(sessions) == 1 and token not in sessions[0]
    await _assert_pttl(redis_client, sessions[0], 5_400_000)
    assert await accounts.authenticate("jo", "wrong", "10.0.0.1") is None
    for who in ("name:jo", "addr:10.0.0.1"):
        await _assert_pttl(redis_client, failures_key(who), 777_000)


async def test_forget_user_and_purge_leave_every_conversation_its_lifetime(runtime, redis_client):
    ended = ThreadRef("discord", "g", "c", "forget-ended")
    active = ThreadRef("discord", "g", "c", "forget-active")
    await _end_by_abuse(runtime.member_actions, ended)
    await runtime.member_actions.handle_message(_msg(active, "hello there", 0))
    retention = Retention(redis_client, case_retention_days=RETENTION_DAYS, idle_ttl_days=IDLE_DAYS)
    report = await retention.forget_user("discord", ANN.id)
    assert report.threads_changed == 2
    await retention.purge()
    await _assert_thread_ttl(redis_client, ended, RETENTION_DAYS * DAY_MS)
    await _assert_thread_ttl(redis_client, active, IDLE_DAYS * DAY_MS)
