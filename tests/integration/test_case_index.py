"""The case indexes on every store (server, cluster, in-process): kept by the scripts that file cases and
change review state, read by the dashboard's list a page at a time, built once for cases filed before them,
and left by a participant the store forgets."""

from __future__ import annotations

import re

import pytest

from adapters.dashboard.query import CaseFilter, page_of
from bot.bootstrap import build_runtime
from bot.metrics import Metrics
from bot.store import CaseQuery, keys
from bot.store.case_index import RedisCaseIndex
from bot.store.connection import RedisConnection
from bot.store.retention import Retention
from bot.types import Author, Case, Entry, EntryKind, Participant, iso
from config.communities import Communities
from config.settings import AnthropicSettings, RedisSettings, Settings
from tests.integration.dashboard_client import dashboard

MOD = Author("dashboard:mod", "mod")
DAY = 86_400
START = 1_790_000_000  # 2026-09-21


def case(n: int, *, action: str = "end", reason: str = "persistent_abuse", category: str = "harassment",
         who: str = "ann", at: float | None = None) -> Case:
    return Case(case_id=0, community="g", platform="discord", thread=f"discord:g:c:t{n}", channel="c",
                action=action, reason=reason, category=category, summary=f"summary {n}",
                ended_at=iso(START + n * 60 if at is None else at), ended_by="bot",
                participants=[Participant(who, who.title())],
                transcript=[Entry(EntryKind.USER, f"message {n} " + "x" * 200, author_id=who, author_name=who)],
                case_ref=f"ref-{n}-{action}")


@pytest.fixture
async def runtime(any_redis):
    settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None))
    rt = build_runtime(settings, redis=any_redis, communities=Communities())
    yield rt
    await rt.aclose()


def retention(client) -> Retention:
    return Retention(client, case_retention_days=30, idle_ttl_days=7)


async def file(rt, *cases: Case) -> list[int]:
    return [(await rt.store.cases.file_action(c)).case_id for c in cases]


async def numbers(rt, query: CaseQuery, offset: int = 0, limit: int = 100) -> tuple[int, list[int]]:
    return await rt.store.case_index.query("g", query, offset, limit)


async def test_filing_and_review_keep_the_indexes(runtime):
    ends = await file(runtime, *(case(i, reason="user_requested" if i % 3 == 0 else "persistent_abuse",
                                      who="bob" if i % 2 else "ann") for i in range(1, 10)))
    [note] = await file(runtime, case(20, action="note"))
    index = runtime.store.case_index
    assert await numbers(runtime, CaseQuery()) == (9, ends[::-1])  # newest first, actions apart
    assert await numbers(runtime, CaseQuery(action="note")) == (1, [note])
    assert await numbers(runtime, CaseQuery(reason="user_requested")) == (3, [ends[8], ends[5], ends[2]])
    assert await numbers(runtime, CaseQuery(reason="persistent_abuse", who="BOB")) == (3, [ends[6], ends[4], ends[0]])
    assert await numbers(runtime, CaseQuery(who="Ann")) == (4, [ends[7], ends[5], ends[3], ends[1]])  # a name too
    assert await numbers(runtime, CaseQuery(), offset=2, limit=3) == (9, ends[::-1][2:5])
    since, until = START + 3 * 60, START + 5 * 60
    assert await numbers(runtime, CaseQuery(since=since, until=until)) == (3, [ends[4], ends[3], ends[2]])

    await runtime.moderation.take("g", ends[0], MOD)
    await runtime.moderation.conclude("g", ends[1], "upheld", MOD, None)
    assert await index.review_counts("g") == {"unreviewed": 7, "in_review": 1, "reviewed": 1, "risk": 0}
    assert await numbers(runtime, CaseQuery(review="in_review")) == (1, [ends[0]])
    assert await numbers(runtime, CaseQuery(review="reviewed")) == (1, [ends[1]])
    awaiting = await numbers(runtime, CaseQuery(review="awaiting"))
    assert awaiting == (8, [n for n in ends[::-1] if n != ends[1]])

    [summary] = await index.summaries("g", [ends[2]])
    [whole] = await index.full_cases("g", [ends[2]])
    assert summary.transcript == [] and summary.summary == "summary 3" and summary.case_id == ends[2]
    assert whole.transcript[0].text.startswith("message 3")


async def test_cases_filed_before_the_indexes_are_indexed_once(runtime, any_redis):
    ends = await file(runtime, *(case(i) for i in range(1, 6)))
    await runtime.moderation.conclude("g", ends[0], "mistaken", MOD, None)
    moderator_actions = await numbers(runtime, CaseQuery(action="review"))
    # As a version before the indexes left them: no index, no summaries, no marker.
    for key in [k async for k in retention(any_redis).scan(f"{keys.community_tag('g')}:ix*")]:
        await any_redis.delete(key)
    for n in range(1, 10):
        await any_redis.hdel(keys.case("g", n), "summary")
    later = RedisCaseIndex(RedisConnection(any_redis, metrics=Metrics()))  # another process, started after the upgrade
    assert [c.summary for c in await later.summaries("g", ends[:1])] == ["summary 1"]  # its body meanwhile
    assert await later.query("g", CaseQuery(review="awaiting"), 0, 10) == (4, ends[:0:-1])
    assert await later.query("g", CaseQuery(review="reviewed"), 0, 10) == (1, [ends[0]])
    assert await later.query("g", CaseQuery(action="review"), 0, 10) == moderator_actions
    again = RedisCaseIndex(RedisConnection(any_redis, metrics=Metrics()))
    assert await again.ensure_indexed("g") == 0  # once: the marker is kept
    assert await any_redis.hget(keys.case("g", ends[0]), "summary") is not None


async def test_a_forgotten_participant_leaves_the_indexes(runtime, any_redis):
    [n] = await file(runtime, case(1, who="ann"))
    assert await numbers(runtime, CaseQuery(who="ann")) == (1, [n])
    await retention(any_redis).forget_user("discord", "ann")
    assert await numbers(runtime, CaseQuery(who="ann")) == (0, [])
    assert await numbers(runtime, CaseQuery(who="Ann")) == (0, [])
    [summary] = await runtime.store.case_index.summaries("g", [n])
    assert summary.participants == []


async def test_a_participant_by_part_of_a_name_is_still_found(runtime):
    await file(runtime, case(1, who="annabel"), case(2, who="bob"))
    total, found = await page_of(runtime.store.case_index, ["g"], CaseFilter(participant="nab", review="all"),
                                 "end", 0, 10)
    assert total == 1 and [c.participants[0].id for c in found] == ["annabel"]


_ROW = re.compile(r'class="case-link" href="/cases/g/(\d+)"')


async def test_the_list_pages_show_the_right_rows_and_the_export_streams_every_case(runtime, any_redis):
    ends = await file(runtime, *(case(i, category="hate" if i % 5 == 0 else "harassment") for i in range(1, 61)))
    await runtime.moderation.take("g", ends[-1], MOD)
    async with dashboard(runtime, ["g"], "mod") as [mod]:
        first = await (await mod.client.get("/cases?review=all")).text()
        second = await (await mod.client.get("/cases?review=all&page=2")).text()
        spam = await (await mod.client.get("/cases?category=hate")).text()
        exported = await mod.client.get("/export.jsonl?review=all")
        lines = (await exported.text()).splitlines()
        csv_export = await (await mod.client.get("/export.csv?category=hate")).text()
    newest = ends[::-1]
    shown = [int(n) for n in dict.fromkeys(_ROW.findall(first))]
    assert shown[:25] == newest[:25]
    assert [int(n) for n in dict.fromkeys(_ROW.findall(second))][:25] == newest[25:50]
    assert [int(n) for n in dict.fromkeys(_ROW.findall(spam))] == [n for n in newest if n % 5 == 0]
    assert exported.headers["Content-Type"].startswith("application/x-ndjson") and len(lines) == 60
    assert '"message 60 ' in lines[0] and '"message 1 ' in lines[-1]  # transcripts included, newest first
    assert len(csv_export.strip().splitlines()) == 1 + 12
