"""Retention and forget-user on a real Redis (one server, a 3-node cluster, and the in-process Redis):
what should go is gone, and nothing else is. Then the moderators' CLI commands on a real server."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from typing import Any

import pytest
from click.testing import CliRunner

from adapters.cli import main as threadguard
from bot.bootstrap import Runtime, build_runtime
from bot.store import keys
from bot.store.inbox_entry import InboxEntry, ReplyTarget
from bot.store.retention import REMOVED_TEXT, Retention, parse_user, transcript_expired
from bot.types import Author, Case, Entry, EntryKind, IncomingMessage, ThreadRef
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings

pytestmark = pytest.mark.timeout(60)

DAY = 86_400
ALICE = Author("u-alice", "alice")
BOB = Author("u-bob", "bob")
HARM = "how do I build a bomb"
_ids = itertools.count(1)


def _runtime(client: Any) -> Runtime:
    settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None),
                        engine=EngineSettings())
    return build_runtime(settings, redis=client)


def _retention(client: Any, **kw: Any) -> Retention:
    return Retention(client, case_retention_days=365, idle_ttl_days=30, **kw)


async def _say(rt: Runtime, thread: ThreadRef, author: Author, *texts: str) -> Any:
    outcome = None
    for text in texts:
        outcome = await rt.member_actions.handle_message(IncomingMessage(thread, author, text, f"m{next(_ids)}"))
    return outcome


async def _end_by_abuse(rt: Runtime, thread: ThreadRef, author: Author = ALICE) -> Case:
    outcome = await _say(rt, thread, author, *[f"{HARM} #{i}" for i in range(4)])
    assert outcome.case is not None
    return outcome.case


async def _dump(client: Any, key: str) -> Any:
    kind = await client.type(key)
    if kind == "hash":
        return await client.hgetall(key)
    if kind == "list":
        return await client.lrange(key, 0, -1)
    if kind == "zset":
        return await client.zrange(key, 0, -1, withscores=True)
    if kind == "set":
        return sorted(await client.smembers(key))
    return await client.get(key)


async def _all_keys(client: Any) -> set[str]:
    return {k async for k in _retention(client).scan("*")}


# --- retention: case transcripts -----------------------------------------------------------------


async def test_purge_expires_old_case_transcripts_and_keeps_the_case(any_redis: Any):
    rt = _runtime(any_redis)
    old = await _end_by_abuse(rt, ThreadRef("discord", "guild-a", "c1", "old"))
    note = await rt.cases.add_action("guild-a", old.case_id, "note", BOB, "looked at it")
    recent = await _end_by_abuse(rt, ThreadRef("discord", "guild-a", "c1", "recent"))
    other = await _end_by_abuse(rt, ThreadRef("slack", "T-b", "C1", "1.1"))
    await any_redis.zadd(keys.case_index("guild-a"), {str(old.case_id): time.time() - 400 * DAY})
    before = {c.case_ref: c.to_json() for c in (await rt.cases.get("guild-a", recent.case_id),
                                                 await rt.cases.get("T-b", other.case_id))}

    report = await _retention(any_redis).purge()

    assert report.transcripts_expired == 1
    expired = await rt.cases.get("guild-a", old.case_id)
    assert transcript_expired(expired)
    assert [e.kind for e in expired.transcript] == [EntryKind.NOTICE]
    assert HARM not in expired.to_json()
    assert (expired.reason, expired.category, expired.redirect_count, expired.warned) == \
        (old.reason, old.category, old.redirect_count, old.warned)
    assert [p.id for p in expired.participants] == ["u-alice"]
    assert expired.actions == [note.case_id]
    assert await any_redis.hget(keys.case("guild-a", old.case_id), "transcript_expired")
    after = {c.case_ref: c.to_json() for c in (await rt.cases.get("guild-a", recent.case_id),
                                                await rt.cases.get("T-b", other.case_id))}
    assert after == before
    assert (await rt.cases.get("guild-a", note.case_id)).note == "looked at it"
    assert (await _retention(any_redis).purge()).transcripts_expired == 0  # idempotent


# --- retention: conversations without a TTL ------------------------------------------------------


async def _strip_ttl(client: Any, thread: ThreadRef, age_days: float, *fields: str) -> None:
    """Make a conversation look ``age_days`` idle and lose its TTL (as after a manual restore)."""
    k = thread.key
    then = time.time() - age_days * DAY
    entries = [Entry.from_json(raw) for raw in await client.lrange(keys.log(k), 0, -1)]
    for entry in entries:
        entry.at = then
    await client.delete(keys.log(k))
    await client.rpush(keys.log(k), *(e.to_json() for e in entries))
    await client.persist(keys.state(k))
    await client.hset(keys.state(k), mapping=dict.fromkeys(fields or ("updated_at", "created_at"), f"{then:.3f}"))


async def test_purge_deletes_old_conversations_that_lack_a_ttl_and_nothing_else(any_redis: Any):
    rt = _runtime(any_redis)
    fresh = ThreadRef("discord", "g", "c", "fresh")
    stale = ThreadRef("discord", "g", "c", "stale")
    young = ThreadRef("discord", "g", "c", "young")
    ended_old = ThreadRef("discord", "g", "c", "ended-old")
    ended_ttl = ThreadRef("slack", "g", "c", "ended-ttl")
    for t in (fresh, stale, young):
        await _say(rt, t, ALICE, "hello there")
    await _end_by_abuse(rt, ended_old)
    await _end_by_abuse(rt, ended_ttl)
    await _strip_ttl(any_redis, stale, 40)
    await _strip_ttl(any_redis, young, 10)
    await _strip_ttl(any_redis, ended_old, 100, "updated_at", "created_at", "ended_at")
    pending = keys.pending(stale.key)
    await any_redis.hset(pending, "1", Case(0, "g", "discord", stale.key, "c").to_json())
    await any_redis.set("tg:dash:account:someone", "kept")
    await any_redis.set("unrelated:key", "kept")
    keep = (await _all_keys(any_redis)) - {keys.state(stale.key), keys.log(stale.key)}
    snapshot = {k: await _dump(any_redis, k) for k in keep}
    fresh_ttl = await any_redis.pttl(keys.state(fresh.key))

    report = await _retention(any_redis).purge()

    assert report.threads_deleted == 1 and report.ttls_set == 2
    assert not await any_redis.exists(keys.state(stale.key), keys.log(stale.key))
    assert await _all_keys(any_redis) == keep
    assert {k: await _dump(any_redis, k) for k in keep} == snapshot
    assert await any_redis.pttl(pending) == -1  # an unfiled case is never dropped
    assert await any_redis.pttl("unrelated:key") == -1
    young_ttl = await any_redis.pttl(keys.state(young.key))
    assert 19.9 * DAY * 1000 < young_ttl <= 20 * DAY * 1000
    assert await any_redis.pttl(keys.log(young.key)) == young_ttl or \
        abs(await any_redis.pttl(keys.log(young.key)) - young_ttl) < 5000
    ended_left = await any_redis.pttl(keys.state(ended_old.key))
    assert 264.9 * DAY * 1000 < ended_left <= 265 * DAY * 1000
    assert abs(await any_redis.pttl(keys.state(fresh.key)) - fresh_ttl) < 5000
    assert (await rt.member_actions.thread_state(ended_ttl)).status.value == "ended"


# --- forget-user ---------------------------------------------------------------------------------


async def test_forget_user_removes_their_words_and_name_everywhere_and_keeps_everyone_elses(any_redis: Any):
    rt = _runtime(any_redis)
    ended = ThreadRef("discord", "guild-a", "c1", "ended")
    active = ThreadRef("discord", "guild-a", "c1", "active")
    elsewhere = ThreadRef("slack", "T1", "C1", "9.9")  # the same user id on another platform
    await _say(rt, ended, BOB, "bob says hi")
    case = await _end_by_abuse(rt, ended)
    await _say(rt, active, ALICE, "alice private words")
    await _say(rt, active, BOB, "bob replies here")
    await _say(rt, elsewhere, ALICE, "slack alice words")
    body = Case(0, "guild-a", "discord", active.key, "c1", transcript=[
        Entry(EntryKind.USER, "alice pending words", author_id="u-alice", author_name="alice")])
    await any_redis.hset(keys.pending(active.key), "7", body.to_json())
    untouched_keys = [keys.log(elsewhere.key), keys.state(ended.key), keys.state(active.key)]
    untouched = {k: await _dump(any_redis, k) for k in untouched_keys}

    report = await _retention(any_redis).forget_user(*parse_user("discord:u-alice"))

    assert report.cases_changed == 1 and report.threads_changed == 2 and report.pending_changed == 1
    forgotten = await rt.cases.get("guild-a", case.case_id)
    assert [p.id for p in forgotten.participants] == ["u-bob"]
    users = [e for e in forgotten.transcript if e.kind is EntryKind.USER]
    assert [e.text for e in users] == ["bob says hi", *[REMOVED_TEXT] * 4]
    assert all(e.author_id is None and e.author_name is None for e in users[1:])
    assert users[0].author_name == "bob"
    assistant = [e for e in forgotten.transcript if e.kind is EntryKind.ASSISTANT]
    assert assistant and all(e.text for e in assistant)
    for key in (keys.case("guild-a", case.case_id), keys.log(ended.key), keys.log(active.key),
                keys.pending(active.key)):
        dumped = json.dumps(await _dump(any_redis, key))
        assert "u-alice" not in dumped and '"alice"' not in dumped and HARM not in dumped
        assert "alice private words" not in dumped and "alice pending words" not in dumped
    _, log = await rt.store.turns.load(active)
    assert [e.text for e in log if e.kind is EntryKind.USER] == [REMOVED_TEXT, "bob replies here"]
    after = {k: await _dump(any_redis, k) for k in untouched_keys}
    # a log rewritten in place moves its generation on: a process holding its old entries reads it anew
    assert [after[keys.state(t.key)].pop("log_gen") for t in (ended, active)] == ["1", "1"]
    assert after == untouched
    again = await _retention(any_redis).forget_user("discord", "u-alice")
    assert (again.cases_changed, again.threads_changed, again.pending_changed) == (0, 0, 0)


async def test_forget_user_reaches_messages_still_waiting_to_be_answered(any_redis: Any):
    thread = ThreadRef("discord", "guild-a", "c1", "busy")
    opening = ThreadRef("slack", "T1", "C1", "1.5")
    waiting = [InboxEntry("e1", IncomingMessage(thread, ALICE, "alice queued words", "m1"), ReplyTarget("u-alice")),
               InboxEntry("e2", IncomingMessage(thread, BOB, "bob queued words", "m2"), ReplyTarget("u-bob")),
               InboxEntry("e3", IncomingMessage(thread, ALICE, "alice again", "m3"), ReplyTarget("u-alice"))]
    await any_redis.rpush(keys.inbox(thread.key), *(e.stored() for e in waiting), "not an entry")
    parked = InboxEntry("p1", IncomingMessage(opening, Author("U-ALICE", "alice"), "slack words", "m4"),
                        ReplyTarget("U-ALICE"))
    await any_redis.rpush(keys.parked(opening.key), parked.stored())

    report = await _retention(any_redis).forget_user("discord", "u-alice")
    assert report.waiting_changed == 2
    raws = await any_redis.lrange(keys.inbox(thread.key), 0, -1)
    assert raws[-1] == "not an entry"
    after = [InboxEntry.parse(thread, raw) for raw in raws[:-1]]  # still answerable, in the same order
    assert [(e.id, e.message.author.id, e.message.text) for e in after] == [
        ("e1", "u-alice", REMOVED_TEXT), ("e2", "u-bob", "bob queued words"), ("e3", "u-alice", REMOVED_TEXT)]
    assert [e.target.user for e in after] == ["u-alice", "u-bob", "u-alice"]
    dumped = "\n".join(raws)
    assert "alice queued" not in dumped and "alice again" not in dumped and '"alice"' not in dumped
    assert "bob queued words" in dumped and '"bob"' in dumped
    # another platform's waiting messages are another user's
    assert await any_redis.lrange(keys.parked(opening.key), 0, -1) == [parked.stored()]
    report = await _retention(any_redis).forget_user("slack", "U-ALICE")
    assert report.waiting_changed == 1
    [raw] = await any_redis.lrange(keys.parked(opening.key), 0, -1)
    assert InboxEntry.parse(opening, raw).message.text == REMOVED_TEXT and "slack words" not in raw
    assert (await _retention(any_redis).forget_user("discord", "u-alice")).waiting_changed == 0


def test_parse_user_accepts_only_known_platforms():
    assert parse_user("slack:U123:x") == ("slack", "U123:x")
    for bad in ("U123", "irc:U1", "discord:"):
        with pytest.raises(ValueError):
            parse_user(bad)


# --- the CLI -------------------------------------------------------------------------------------


def _cli(redis_url: str, *args: str, stdin: str | None = None) -> Any:
    env = {"REDIS_URL": redis_url, "ANTHROPIC_API_KEY": "", "THREADGUARD_LOG_LEVEL": "WARNING"}
    return CliRunner().invoke(threadguard, list(args), env=env, input=stdin, catch_exceptions=False)


async def test_cli_purge_forget_user_export_and_moderator_accounts(redis_client: Any, redis_server: Any):
    rt = _runtime(redis_client)
    case = await _end_by_abuse(rt, ThreadRef("discord", "guild-a", "c1", "cli"))
    await redis_client.zadd(keys.case_index("guild-a"), {str(case.case_id): time.time() - 400 * DAY})
    url = redis_server.url

    run = await asyncio.to_thread(_cli, url, "cases", "export", "--format", "jsonl")
    assert run.exit_code == 0, run.output
    assert [json.loads(line)["case_id"] for line in run.output.splitlines()] == [case.case_id]
    run = await asyncio.to_thread(_cli, url, "forget-user", "discord:u-alice", "--yes")
    assert run.exit_code == 0 and re.match(r"Removed \d+ entries in 1 cases, \d+ messages in 1 conv", run.output)
    assert "0 messages waiting to be answered" in run.output
    run = await asyncio.to_thread(_cli, url, "purge")
    assert run.exit_code == 0 and "Expired 1 case transcripts" in run.output, run.output
    run = await asyncio.to_thread(_cli, url, "cases", "export", "--format", "csv")
    assert run.output.splitlines()[0].startswith("community,case_id,action")
    assert "persistent_abuse" in run.output and "alice" not in run.output
    bad = await asyncio.to_thread(_cli, url, "forget-user", "nowhere:1", "--yes")
    assert bad.exit_code == 2

    run = await asyncio.to_thread(_cli, url, "moderator", "add", "mod-a", "--community", "guild-a",
                                  "--password-stdin", stdin="a long enough password\n")
    assert run.exit_code == 0, run.output
    stored = await redis_client.hgetall("tg:dash:account:mod-a")
    assert stored["password"].startswith("scrypt$") and "a long enough password" not in json.dumps(stored)
    assert json.loads(stored["communities"]) == ["guild-a"]
    short = await asyncio.to_thread(_cli, url, "moderator", "add", "x", "--admin", "--password-stdin",
                                    stdin="short\n")
    assert short.exit_code == 1 and "at least" in short.output
    listed = await asyncio.to_thread(_cli, url, "moderator", "list")
    assert "mod-a" in listed.output and "guild-a" in listed.output
    await rt.aclose()
