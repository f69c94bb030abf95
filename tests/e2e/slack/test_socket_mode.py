"""Socket Mode through ``run_slack`` itself: the real Bolt Socket Mode handler opens a connection via
``apps.connections.open`` on the stand-in, receives envelopes and acknowledges each one."""

from __future__ import annotations

import asyncio
import contextlib
import types

from adapters.slack.app import run_slack
from adapters.slack.translate import thread_ref
from bot.types import ThreadStatus
from tests.e2e.slack.conftest import CHANNEL, HARMFUL, MODLOG, TEAM, slack_settings, thread_texts


@contextlib.asynccontextmanager
async def running(env):
    stop = asyncio.Event()
    task = asyncio.create_task(run_slack(env.runtime.settings, runtime=env.runtime,
                                         slack=slack_settings(env.standin), stop=stop))
    try:
        await env.standin.wait_connected()
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _event(standin, body, **retry):
    envelope_id = await standin.push("events_api", body, **retry)
    ack = await standin.wait_ack(envelope_id)
    assert set(ack) == {"envelope_id"}


async def test_socket_mode_carries_the_ladder_to_a_frozen_thread(make_env, payloads):
    env = await make_env()
    standin = env.standin
    async with running(env):
        assert standin.attempts("apps.connections.open")
        first = payloads.mention(HARMFUL)
        root = first["event"]["ts"]
        expected = 1
        await _event(standin, first)
        for _ in range(3):
            await standin.wait_for(lambda n=expected: len(thread_texts(standin, root)) >= n)
            await asyncio.sleep(0.05)  # let the answer's last update land before the next message
            body = payloads.message(HARMFUL, root)
            await _event(standin, body)
            expected += 2 if expected == 2 else 1
        # The 4th message ends the thread: the notice, the mod-log post and the case.
        await standin.wait_for(lambda: standin.calls_to("files.completeUploadExternal", channel_id=MODLOG))
        shown = thread_texts(standin, root)
        assert shown[3].startswith("⚠️ Warning")
        assert shown[4].startswith("This conversation has been ended because")
        assert (await env.runtime.cases.get(TEAM, 1)).reason == "persistent_abuse"
        state = await env.runtime.member_actions.thread_state(thread_ref(TEAM, CHANNEL, root))
        assert state.status is ThreadStatus.ENDED
        turns = env.model.turns
        assert turns == 4

        # A later post: an ephemeral notice, no model call. A redelivery of it: nothing more.
        later = payloads.message("still there?", root)
        await _event(standin, later)
        await standin.wait_for(lambda: standin.calls_to("chat.postEphemeral", thread_ts=root))
        await _event(standin, later, retry_attempt=1, retry_reason="timeout")
        refused_id = await standin.push("slash_commands", payloads.command(
            "cases", "UALICE", standin.response_url("sm")))
        await standin.wait_ack(refused_id)
        await standin.wait_for(lambda: standin.responses)
    assert standin.responses[0]["text"] == "Only this workspace's moderators can use that command."
    assert len(standin.calls_to("chat.postEphemeral", thread_ts=root)) == 1
    assert env.model.turns == turns


async def test_socket_mode_acknowledges_unusable_envelopes_once(make_env, payloads, caplog):
    """Envelopes whose event cannot be used (a lone surrogate, wrong types, no event) are acknowledged and
    logged once each, without a traceback; a member's message after them is answered."""
    env = await make_env()
    standin = env.standin
    broken = [payloads.mention("hi"), payloads.mention("hi"), payloads.mention("hi"), payloads.mention("hi")]
    broken[0]["event"]["text"] = "hi \ud800"
    broken[1]["event"]["channel"] = 42
    broken[2]["event"] = None
    del broken[3]["event"]["user"]
    async with running(env):
        with caplog.at_level("DEBUG"):
            for body in broken:
                await _event(standin, body)
            fine = payloads.mention("still answered")
            await _event(standin, fine)
            await standin.wait_for(lambda: len(thread_texts(standin, fine["event"]["ts"])) >= 1)
    dropped = [r for r in caplog.records if r.getMessage().startswith("slack envelope")
               and "acknowledged and dropped" in r.getMessage()]
    assert len(dropped) == len(broken)
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= 30]


async def test_socket_mode_serves_installed_workspaces_and_their_install_pages(make_env):
    import aiohttp
    from cryptography.fernet import Fernet

    from tests.e2e.slack.test_workspaces import Team, authorize, begin_install, redirect
    from tests.support.redis_servers import free_port
    from tests.support.slack_standin import CLIENT_ID, CLIENT_SECRET

    env = await make_env()
    standin = env.standin
    team = Team(standin, "TSOCK", "CSOCK")
    port = free_port()
    slack = slack_settings(standin, bot_token=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                           token_encryption_key=Fernet.generate_key().decode(), install_port=port,
                           authorization_url=standin.authorization_url)
    stop = asyncio.Event()
    task = asyncio.create_task(run_slack(env.runtime.settings, runtime=env.runtime, slack=slack, stop=stop))
    try:
        await standin.wait_connected()
        listener = types.SimpleNamespace(port=port)  # the install pages' own HTTP listener, beside the socket
        async with aiohttp.ClientSession() as session:
            for _ in range(50):
                with contextlib.suppress(aiohttp.ClientError):
                    url, cookie = await begin_install(session, listener)
                    break
                await asyncio.sleep(0.1)
            query = await authorize(session, standin, url, team.id, "UADMIN")
            assert await redirect(session, listener, query, cookie) == 200
        await _event(standin, team.mention("hello", "UALICE"))
        shown = ("chat.postMessage", "chat.startStream")  # the answer streams where the channel takes it
        await standin.wait_for(lambda: any(standin.calls_to(m, channel="CSOCK") for m in shown))
        posts = [c for c in standin.calls if c.method in shown]
        assert posts and {c.team for c in posts} == {"TSOCK"} and not [c for c in standin.calls if c.error]
        ignored = await standin.push("events_api", payloads_for_other_team(standin))  # never installed there
        await standin.wait_ack(ignored)
        await asyncio.sleep(0.3)
        assert {c.team for c in standin.calls if c.method in shown} == {"TSOCK"}
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def payloads_for_other_team(standin):
    from tests.e2e.slack.test_workspaces import Team

    return Team(standin, "TNEVER", "CNEVER").mention("hello?", "UEVE")
