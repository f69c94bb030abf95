"""Two members in one Slack thread, through the real Bolt app and slack-sdk client over signed HTTP, with Claude
through the real anthropic SDK at the Messages API stand-in: the model receives named turns, the warning
mentions only the member whose requests were redirected, a non-starter's end command is refused privately,
after the end the bystander's own conversation works, and only the abuser's record counts the ending."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from adapters.slack.app import create_bot
from adapters.slack.shared import ACTION
from adapters.slack.translate import thread_ref
from bot.bootstrap import build_runtime
from bot.shared import NOT_A_BYSTANDER, NOT_THE_STARTER
from bot.types import ThreadStatus
from config.communities import Communities
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
from tests.e2e.slack.conftest import (
    CHANNEL,
    HARMFUL,
    MODERATOR,
    MODLOG,
    TEAM,
    HttpEndpoint,
    Payloads,
    SlackEnv,
    community,
    serve,
    slack_settings,
    thread_texts,
)
from tests.support.anthropic_standin import AnthropicStandin
from tests.support.shared_threads import member_lines, note, responder
from tests.support.slack_standin import SlackStandin

ALICE, BOB = "UALICE", "UBOB"


@pytest_asyncio.fixture
async def env(standin: SlackStandin, redis_client: Any, anthropic_standin: AnthropicStandin) -> AsyncIterator[SlackEnv]:
    anthropic_standin.responder = responder
    settings = Settings(anthropic=AnthropicSettings(api_key="k", base_url=anthropic_standin.base_url, max_retries=0),
                        redis=RedisSettings(url=None), engine=EngineSettings())
    runtime = build_runtime(settings, redis=redis_client, communities=Communities(community()))
    bot = create_bot(runtime, slack_settings(standin))
    try:
        yield SlackEnv(standin, runtime, bot, model=None)  # type: ignore[arg-type]
    finally:
        await bot.aclose()


@pytest_asyncio.fixture
async def http(env: SlackEnv) -> AsyncIterator[HttpEndpoint]:
    async with serve(env) as endpoint:
        yield endpoint


def click_payload(value: str, user: str, message_ts: str, thread_ts: str) -> dict[str, Any]:
    return {"type": "block_actions", "team": {"id": TEAM, "domain": "example"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
            "api_app_id": "A0APP", "token": "legacy", "trigger_id": f"trig-{time.monotonic_ns()}",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": CHANNEL},
            "channel": {"id": CHANNEL, "name": "general"},
            "message": {"type": "message", "ts": message_ts, "thread_ts": thread_ts, "text": "ended"},
            "actions": [{"action_id": ACTION, "block_id": "threadguard_own", "type": "button",
                         "value": value, "action_ts": str(time.time())}]}


async def send(env: SlackEnv, http: HttpEndpoint, body: dict[str, Any]) -> None:
    status, _ = await http.event(body)
    assert status == 200
    await env.settle()


def ephemerals(standin: SlackStandin, user: str) -> list[str]:
    return [c["text"] for c in standin.calls_to("chat.postEphemeral", user=user)]


async def test_two_members_one_thread_addressed_ladder_private_refusal_and_the_bystanders_branch(
        env: SlackEnv, http: HttpEndpoint, payloads: Payloads, anthropic_standin: AnthropicStandin) -> None:
    standin, engine = env.standin, env.runtime.member_actions
    opening = payloads.mention("help me outline my history essay", user=ALICE)
    root = opening["event"]["ts"]
    thread = thread_ref(TEAM, CHANNEL, root)
    await send(env, http, opening)
    await send(env, http, payloads.message("I can help too, what's the topic?", root, user=BOB))
    assert member_lines(anthropic_standin.last_body) == [(ALICE, ALICE, "help me outline my history essay"),
                                                         (BOB, BOB, "I can help too, what's the topic?")]
    assert f"speaker_id={BOB}; speaker_started_thread=no" in note(anthropic_standin.last_body)

    # bob's end command is refused privately; the thread goes on, nothing is posted in it
    posted = len(thread_texts(standin, root))
    link = f"<https://example.slack.com/archives/{CHANNEL}/p{root.replace('.', '')}>"
    status, _ = await http.command(payloads.command(f"end {link}", BOB, standin.response_url("bob-end")))
    assert status == 200
    await env.settle()
    answers = [r for r in standin.responses if r["rid"] == "bob-end"]
    assert [(a["response_type"], a["text"]) for a in answers] == [("ephemeral", NOT_THE_STARTER)]
    assert len(thread_texts(standin, root)) == posted
    assert (await engine.thread_state(thread)).status is ThreadStatus.ACTIVE

    for _ in range(3):
        await send(env, http, payloads.message(HARMFUL, root, user=BOB))
    [warning] = [t for t in thread_texts(standin, root) if "Warning" in t]
    assert warning.startswith(f"<@{BOB}> ") and f"<@{ALICE}>" not in warning

    await send(env, http, payloads.message(HARMFUL, root, user=BOB))
    state = await engine.thread_state(thread)
    assert state.status is ThreadStatus.ENDED and state.ended_reason == "persistent_abuse"
    [offer] = [c for c in standin.calls_to("chat.postMessage", channel=CHANNEL, thread_ts=root)
               if c.get("blocks") and "your part of it" in c.get("text", "")]
    assert offer["text"].startswith(f"<@{ALICE}> ") and BOB not in offer["text"]
    blocks = offer["blocks"] if isinstance(offer["blocks"], list) else json.loads(offer["blocks"])
    assert blocks[1]["elements"][0]["action_id"] == ACTION and blocks[1]["elements"][0]["value"] == thread.key

    case = await env.runtime.cases.get(TEAM, 1)
    assert [(p.id, p.role) for p in case.participants] == [(ALICE, "starter"), (BOB, "redirected")]
    assert await env.runtime.review.standing_ends(TEAM, [ALICE, BOB]) == {ALICE: 0, BOB: 1}
    [modlog] = standin.calls_to("chat.postMessage", channel=MODLOG)
    fields = json.dumps(modlog["blocks"])
    assert f"<@{ALICE}> [starter], <@{BOB}> [redirected requests (3)]" in fields

    # bob is no bystander; alice continues her part in a thread of her own
    await http.shortcut(click_payload(thread.key, BOB, offer["_ts"], root))
    await env.settle()
    assert ephemerals(standin, BOB)[-1] == NOT_A_BYSTANDER
    await http.shortcut(click_payload(thread.key, ALICE, offer["_ts"], root))
    await env.settle()
    assert ephemerals(standin, ALICE)[-1].startswith("Your conversation continues in a new thread of your own")
    [new_root] = [c for c in standin.calls_to("chat.postMessage", channel=CHANNEL)
                  if not c.get("thread_ts") and f"<@{ALICE}> continues" in c.get("text", "")]
    new_thread = thread_ref(TEAM, CHANNEL, new_root["_ts"])
    calls = anthropic_standin.calls
    await send(env, http, payloads.message("so, the conclusion?", new_root["_ts"], user=ALICE))
    assert anthropic_standin.calls == calls + 1
    assert member_lines(anthropic_standin.last_body) == ["help me outline my history essay", "so, the conclusion?"]
    assert thread_texts(standin, new_root["_ts"])[-1].startswith("Happy to help with that")
    branch = await engine.thread_state(new_thread)
    assert branch.branch_of == thread.key and (branch.ladder.redirects, branch.ladder.warned) == (0, False)

    # a moderator may end any conversation; alice's own branch is hers to end
    status, _ = await http.command(payloads.command(f"end <https://example.slack.com/archives/{CHANNEL}/p"
                                                    f"{new_root['_ts'].replace('.', '')}>", MODERATOR,
                                                    standin.response_url("mod-end")))
    await env.settle()
    assert (await engine.thread_state(new_thread)).status is ThreadStatus.ENDED
    ended = await env.runtime.cases.get(TEAM, 2)
    assert ended.ended_by == f"moderator:{MODERATOR}" and ended.reason == "user_requested"
