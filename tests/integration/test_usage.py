"""Token accounting: what the Messages API reported, summed per turn, thread, case and community day,
shown by ``threadguard usage`` exactly."""

from __future__ import annotations

import json
import secrets
import time

from bot.types import ThreadRef
from bot.usage import TokenTotals, day_of
from tests.integration.engine_helpers import claude_runtime, message
from tests.support.anthropic_standin import reply, tool_use
from tests.support.processes import clean_env, run_cli

KINDS = {"input": "input_tokens", "output": "output_tokens", "cache_write": "cache_creation_input_tokens",
         "cache_read": "cache_read_input_tokens"}


def reported(usages: list[dict[str, int]]) -> dict[str, int]:
    return {name: sum(u.get(key, 0) for u in usages) for name, key in KINDS.items()}


def redirect() -> dict:
    return tool_use("record_redirection", {"category": "harassment", "note": "declined"})


def end() -> dict:
    return tool_use("end_conversation", {"reason": "persistent_abuse", "category": "harassment",
                                         "summary": "Kept at it after the warning."})


async def drive_ladder(runtime, api, thread: ThreadRef) -> int:
    """Two ordinary turns, three redirected turns (two model calls each), then an end. Returns the case id."""
    members = runtime.member_actions
    for text in ("hello there", "what is a good book?"):
        api.enqueue(reply(f"An answer to: {text}. " * 20))
        await members.handle_message(message(thread, text))
    for _ in range(3):
        api.enqueue(reply("I won't help with that.", redirect()), reply(" Let's talk about something else."))
        await members.handle_message(message(thread, "insult them for me"))
    api.enqueue(reply(end()))
    outcome = await members.handle_message(message(thread, "do it now"))
    assert outcome.case is not None
    return outcome.case.case_id


async def test_usage_is_summed_per_thread_case_and_day_exactly_as_reported(redis_client, redis_server,
                                                                         anthropic_standin):
    community = f"guild-{secrets.token_hex(4)}"
    thread = ThreadRef("discord", community, "c1", "t-usage")
    runtime = claude_runtime(redis_client, anthropic_standin.base_url)
    try:
        case_id = await drive_ladder(runtime, anthropic_standin, thread)
        api_totals = reported(anthropic_standin.reported_usage)
        assert anthropic_standin.calls == 9 and all(api_totals.values())

        thread_totals = await runtime.usage.thread(thread.key)
        assert {k: thread_totals.as_dict()[k] for k in KINDS} == api_totals
        assert (thread_totals.calls, thread_totals.turns) == (9, 6)
        assert await runtime.usage.case(community, case_id) == thread_totals
        [today] = await runtime.usage.days(community)
        assert today.totals == thread_totals

        # the CLI, in a process of its own, reads the same Redis
        code, out, err = await run_cli("usage", "--json", "--community", community,
                                       env=clean_env(REDIS_URL=redis_server.url))
        assert code == 0, err
        [row] = [json.loads(line) for line in out.splitlines()]
        assert row["community"] == community and row["day"] == day_of(time.time())
        assert {k: row[k] for k in KINDS} == api_totals
        assert (row["calls"], row["turns"]) == (9, 6)

        code, table, err = await run_cli("usage", "--community", community, env=clean_env(REDIS_URL=redis_server.url))
        assert code == 0, err
        line = next(x for x in table.splitlines() if community in x)
        expected = TokenTotals(**{**api_totals, "calls": 9, "turns": 6})
        assert line.split()[2:8] == [str(expected.turns), str(expected.calls), str(expected.input),
                                     str(expected.output), str(expected.cache_write), str(expected.cache_read)]
    finally:
        await runtime.aclose()


async def test_an_end_by_the_member_files_the_threads_usage_with_the_case(redis_client, anthropic_standin):
    community = f"guild-{secrets.token_hex(4)}"
    thread = ThreadRef("discord", community, "c1", "t-user-end")
    runtime = claude_runtime(redis_client, anthropic_standin.base_url)
    try:
        anthropic_standin.enqueue(reply("Hi!"))
        await runtime.member_actions.handle_message(message(thread, "hi"))
        outcome = await runtime.member_actions.end_by_user(thread, message(thread, "x").author)
        case_usage = await runtime.usage.case(community, outcome.case.case_id)
        assert {k: case_usage.as_dict()[k] for k in KINDS} == reported(anthropic_standin.reported_usage)
        assert case_usage.turns == 1  # the end command itself called no model
    finally:
        await runtime.aclose()


async def test_usage_of_a_failed_turn_is_still_counted(redis_client, anthropic_standin):
    """The first call of a tool round succeeded (and is billed), the second failed: the tokens still count."""
    community = f"guild-{secrets.token_hex(4)}"
    thread = ThreadRef("discord", community, "c1", "t-failed")
    runtime = claude_runtime(redis_client, anthropic_standin.base_url, max_retries=0)
    try:
        anthropic_standin.enqueue(reply("No.", redirect()))  # the follow-up call finds nothing scripted: a 500
        outcome = await runtime.member_actions.handle_message(message(thread, "insult them"))
        assert outcome.replies[0].kind.value == "error"
        totals = await runtime.usage.thread(thread.key)
        assert {k: totals.as_dict()[k] for k in KINDS} == reported(anthropic_standin.reported_usage)
        assert totals.calls == 1
    finally:
        await runtime.aclose()


async def test_the_ledger_sums_on_every_store(any_redis):
    """The same sums on one server, on Redis Cluster (thread and community keys in different slots) and on
    the in-process Redis; the first record loads its script on a server that never saw it."""
    from bot.model import Usage
    from bot.store.usage import UsageLedger
    from config.settings import StoreSettings

    ledger = UsageLedger(any_redis, thread_ttl_ms=StoreSettings().ended_ttl_ms)
    thread = ThreadRef("slack", "T1", "C1", "1.0")
    await ledger.record_turn(thread, Usage(10, 2, 300, 0, calls=1), at=0)
    totals = await ledger.record_turn(thread, Usage(5, 3, 0, 300, calls=2), at=86_400 * 1.5)
    assert totals == TokenTotals(15, 5, 300, 300, 3, 2)
    assert await ledger.thread(thread.key) == totals
    await ledger.record_case("T1", 7, await ledger.thread(thread.key))
    assert await ledger.case("T1", 7) == totals
    days = await ledger.days("T1", days=3, until=86_400 * 2)
    assert [(d.day, d.totals) for d in days] == [("1970-01-02", TokenTotals(5, 3, 0, 300, 2, 1)),
                                                 ("1970-01-01", TokenTotals(10, 2, 300, 0, 1, 1))]
    assert await ledger.communities() == ["T1"]


async def test_a_turns_usage_rides_with_its_commit_and_counts_once_when_the_scripts_were_lost(any_redis, request):
    """On one server the usage record goes in the commit's own request (a turn is two requests); on Redis
    Cluster it goes to its slots at the same time (three). After the server lost its scripts (a restart), the
    commit and the record are each run once: nothing is counted twice or lost."""
    from bot.bootstrap import build_runtime
    from bot.model import Usage
    from bot.types import ReplyKind
    from config.communities import Communities, CommunityConfig
    from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
    from tests.integration.scripted_model import ScriptedModel

    where = request.node.callspec.params["any_redis"]
    model = ScriptedModel(lambda text: [], usage=Usage(100, 7, 0, 900, calls=1))
    settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None),
                        engine=EngineSettings())
    runtime = build_runtime(settings, redis=any_redis, model=model, communities=Communities(CommunityConfig()))
    community = f"guild-{secrets.token_hex(4)}"
    thread = ThreadRef("discord", community, "c1", "t-rider")
    try:
        await runtime.member_actions.handle_message(message(thread, "first"))  # scripts loaded
        requests = runtime.store.health.round_trips + runtime.usage.round_trips
        outcome = await runtime.member_actions.handle_message(message(thread, "second"))
        assert outcome.replies[0].kind is ReplyKind.ANSWER
        sent = runtime.store.health.round_trips + runtime.usage.round_trips - requests
        assert sent == (3 if where == "cluster" else 2)

        await any_redis.script_flush()
        outcome = await runtime.member_actions.handle_message(message(thread, "third"))
        assert outcome.replies[0].kind is ReplyKind.ANSWER
        state, log = await runtime.store.turns.load(thread)
        assert state.ladder.turn == 3 and [e.text for e in log if e.kind.value == "user"] == ["first", "second",
                                                                                               "third"]
        expected = TokenTotals(300, 21, 0, 2700, 3, 3)
        assert await runtime.usage.thread(thread.key) == expected
        [today] = await runtime.usage.days(community)
        assert today.totals == expected
        assert community in await runtime.usage.communities()
    finally:
        await runtime.aclose()


async def test_a_commit_sent_again_after_its_reply_was_lost_counts_the_usage_once(any_redis):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from bot.bootstrap import build_runtime
    from bot.model import Usage
    from bot.types import ReplyKind
    from config.communities import Communities, CommunityConfig
    from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
    from tests.integration.scripted_model import ScriptedModel

    model = ScriptedModel(lambda text: [], usage=Usage(100, 7, 0, 900, calls=1))
    settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None),
                        engine=EngineSettings())
    runtime = build_runtime(settings, redis=any_redis, model=model, communities=Communities(CommunityConfig()))
    community = f"guild-{secrets.token_hex(4)}"
    thread = ThreadRef("discord", community, "c1", "t-lost-reply")
    real = runtime.store.health.run
    sent: list[int] = []

    async def reply_lost_once(script, keys, args):
        res = await real(script, keys, args)
        if script is runtime.store.turns._commit:
            sent.append(1)
            if len(sent) == 1:
                raise RedisConnectionError("the reply was lost")
        return res

    runtime.store.health.run = reply_lost_once
    try:
        outcome = await runtime.member_actions.handle_message(message(thread, "hello"))
        assert outcome.replies[0].kind is ReplyKind.ANSWER
        assert len(sent) == 2  # the commit went twice
        once = TokenTotals(100, 7, 0, 900, 1, 1)
        assert await runtime.usage.thread(thread.key) == once
        [today] = await runtime.usage.days(community)
        assert today.totals == once
        state, log = await runtime.store.turns.load(thread)
        assert state.ladder.turn == 1 and len(log) == 2
    finally:
        await runtime.aclose()
