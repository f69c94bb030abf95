"""Many workspaces, with real ``threadguard slack --http`` worker processes: two workspaces install the app
through the "Add to Slack" flow (``/slack/install`` -> Slack's authorization page -> ``/slack/oauth_redirect``),
each member is answered with their own workspace's token (the Slack stand-in refuses any other), a rotating
token is renewed once across the workers, and an uninstalled workspace gets no further Web API call while
its cases stay until ``forget-community``. Tokens never appear in the logs or in Redis in clear text.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp
import pytest
import pytest_asyncio
from cryptography.fernet import Fernet

from bot.store.installations import InstallationRecords
from tests.e2e.slack.conftest import thread_texts
from tests.e2e.slack.test_pipeline_faults import ANSWER, Model, _end_reply, until
from tests.integration.test_retention import _cli
from tests.integration.test_slack_installations import all_values
from tests.support.anthropic_standin import AnthropicStandin
from tests.support.redis_servers import RedisServer
from tests.support.slack_standin import CLIENT_ID, CLIENT_SECRET, SlackStandin
from tests.support.workers import Worker, post_event, worker_env

pytestmark = pytest.mark.timeout(240)

STATE_COOKIE = "slack-app-oauth-state"


class Team:
    """Raw Slack payloads of one workspace."""

    _n = itertools.count(1)

    def __init__(self, standin: SlackStandin, team_id: str, channel: str) -> None:
        self.id = team_id
        self.channel = channel
        self.workspace = standin.add_workspace(team_id, channels=(channel,))

    def ts(self) -> str:
        return f"{1_800_000_000 + next(self._n)}.000300"

    def envelope(self, event: dict[str, Any]) -> dict[str, Any]:
        return {"token": "legacy", "team_id": self.id, "api_app_id": "A0APP", "type": "event_callback",
                "event_id": f"Ev{self.id}{next(self._n):08d}", "event_time": int(time.time()),
                "authorizations": [{"team_id": self.id, "user_id": self.workspace.bot_user_id, "is_bot": True}],
                "event": event}

    def mention(self, text: str, user: str) -> dict[str, Any]:
        ts = self.ts()
        return self.envelope({"type": "app_mention", "user": user, "text": f"<@{self.workspace.bot_user_id}> {text}",
                              "ts": ts, "channel": self.channel, "event_ts": ts, "team": self.id})

    def reply(self, text: str, thread_ts: str, user: str) -> dict[str, Any]:
        ts = self.ts()
        return self.envelope({"type": "message", "user": user, "text": text, "ts": ts, "thread_ts": thread_ts,
                              "channel": self.channel, "channel_type": "channel", "event_ts": ts, "team": self.id})

    def uninstalled(self) -> dict[str, Any]:
        return self.envelope({"type": "app_uninstalled", "event_ts": self.ts()})


@pytest_asyncio.fixture
async def oauth_standin() -> AsyncIterator[SlackStandin]:
    s = SlackStandin()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
def redis() -> Any:
    with RedisServer() as server:
        yield server


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        yield s


@pytest_asyncio.fixture
async def fleet(oauth_standin: SlackStandin, anthropic_standin: AnthropicStandin,
                redis: RedisServer) -> AsyncIterator[Callable[..., Any]]:
    """Two workers serving every installed workspace; the redirect URL registered is the first one's."""
    started: list[Worker] = []

    async def start(**extra: str) -> list[Worker]:
        env = worker_env(redis.url, oauth_standin.base_url, anthropic_standin.base_url, SLACK_BOT_TOKEN="",
                         SLACK_CLIENT_ID=CLIENT_ID, SLACK_CLIENT_SECRET=CLIENT_SECRET,
                         SLACK_TOKEN_ENCRYPTION_KEY=Fernet.generate_key().decode(),
                         SLACK_AUTHORIZATION_URL=oauth_standin.authorization_url, **extra)
        pair = [Worker(f"w{i}", env) for i in range(2)]
        env["SLACK_REDIRECT_URI"] = f"http://127.0.0.1:{pair[0].port}/slack/oauth_redirect"
        started.extend(w.start() for w in pair)
        await asyncio.gather(*(w.ready() for w in pair))
        return pair

    yield start
    for w in started:
        w.close()


class Site(Protocol):
    """Where the install pages are served: a worker, or Socket Mode's own listener."""

    port: int


def base(site: Site) -> str:
    return f"http://127.0.0.1:{site.port}"


async def begin_install(session: aiohttp.ClientSession, worker: Site) -> tuple[str, str]:
    """``GET /slack/install``: (Slack's authorization URL, the state cookie's value)."""
    async with session.get(f"{base(worker)}/slack/install", allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"], resp.cookies[STATE_COOKIE].value


async def authorize(session: aiohttp.ClientSession, standin: SlackStandin, url: str, team: str,
                    user: str) -> dict[str, str]:
    """The installer presses Allow on Slack's page: the query Slack sends back (code and state)."""
    standin.approve(team, user)
    async with session.get(url, allow_redirects=False) as resp:
        assert resp.status == 302
        back = urllib.parse.urlsplit(resp.headers["Location"])
    return dict(urllib.parse.parse_qsl(back.query))


async def redirect(session: aiohttp.ClientSession, worker: Site, query: dict[str, str],
                   cookie: str | None) -> int:
    headers = {"Cookie": f"{STATE_COOKIE}={cookie}"} if cookie else {}
    async with session.get(f"{base(worker)}/slack/oauth_redirect", params=query, headers=headers,
                           allow_redirects=False) as resp:
        await resp.read()
        return resp.status


async def install(session: aiohttp.ClientSession, standin: SlackStandin, start: Worker, finish: Worker,
                  team: str, user: str) -> None:
    url, cookie = await begin_install(session, start)
    query = await authorize(session, standin, url, team, user)
    assert await redirect(session, finish, query, cookie) == 200


def answered(standin: SlackStandin, team: Team) -> collections.Counter[str]:
    """Answers shown in the team's channel (their latest text, after streaming updates), by member text."""
    roots = {str(c.get("thread_ts")) for method in ("chat.postMessage", "chat.startStream")
             for c in standin.calls_to(method) if c.get("channel") == team.channel}
    return collections.Counter(t[len(ANSWER):] for root in roots for t in thread_texts(standin, root, team.channel)
                               if t.startswith(ANSWER))


async def redis_dump(url: str) -> str:
    client = _client(url)
    try:
        return await all_values(client)
    finally:
        await client.aclose()


async def no_clear_secrets(standin: SlackStandin, redis_url: str, *workers: Worker) -> None:
    secrets = [*standin.tokens, *standin.refresh_tokens, CLIENT_SECRET]
    assert len(secrets) >= 2  # at least one token issued
    dump = await redis_dump(redis_url)
    for worker in workers:
        log = worker.log()
        assert "Traceback" not in log, log[-3000:]
        assert not [s for s in secrets if s in log], "a token reached a log"
    assert not [s for s in secrets if s in dump], "a token is in Redis in clear text"


async def test_two_workspaces_install_and_each_is_answered_with_its_own_token_then_one_uninstalls(
        fleet, oauth_standin, anthropic_standin, redis, session):
    standin = oauth_standin
    anthropic_standin.responder = _end_reply
    a, b = await fleet()
    one, two = Team(standin, "TAAA", "CAAA"), Team(standin, "TBBB", "CBBB")
    await install(session, standin, a, a, one.id, "UADMIN1")
    await install(session, standin, b, a, two.id, "UADMIN2")  # any worker starts it, the redirect URL finishes it
    records = InstallationRecords(_client(redis.url))
    assert await records.installer("-:TAAA") == "UADMIN1" and await records.installer("-:TBBB") == "UADMIN2"

    roots = {}
    for team, first, second in ((one, a, b), (two, b, a)):
        mention = team.mention("hello", "UALICE")
        roots[team.id] = mention["event"]["ts"]
        assert await post_event(session, first.url, mention) == 200
        await until(lambda t=team: answered(standin, t)["hello"], 15, f"the answer in {team.id}")
        assert await post_event(session, second.url, team.reply("and more", roots[team.id], "UALICE")) == 200
    for team in (one, two):
        await until(lambda t=team: answered(standin, t)["and more"], 15, f"the reply's answer in {team.id}")

    web_calls = [c for c in standin.calls if c.method != "oauth.v2.access"]
    assert not [c for c in web_calls if c.error], [(c.method, c.error) for c in web_calls if c.error]
    for team in (one, two):
        posts = [c for c in web_calls if c.args.get("channel") == team.channel]
        assert posts and {c.team for c in posts} == {team.id}
        assert {c.token for c in posts} <= set(standin.tokens_of(team.id))

    # workspace two files a case, then uninstalls the app
    assert await post_event(session, b.url, two.reply("please end", roots[two.id], "UALICE")) == 200
    await until(lambda: any(c.get("channel") == two.channel and "ended" in str(c.get("text", "")).lower()
                            for c in standin.calls_to("chat.postMessage")), 15, "the freeze notice in TBBB")
    gone = standin.revoke(two.id)
    assert await post_event(session, a.url, two.uninstalled()) == 200
    uninstalled_at = time.monotonic()
    await asyncio.sleep(0.3)
    model_calls = anthropic_standin.calls
    for worker in (a, b):
        assert await post_event(session, worker.url, two.reply("still there?", roots[two.id], "UBOB")) == 200
        assert await post_event(session, worker.url, two.mention("anyone?", "UBOB")) == 200
    assert await post_event(session, b.url, one.reply("after", roots[one.id], "UALICE")) == 200
    await until(lambda: answered(standin, one)["after"], 15, "workspace one still answered")
    await asyncio.sleep(1.0)
    late = [c for c in standin.calls if c.at >= uninstalled_at and c.token in gone]
    assert late == [], [(c.method, c.error) for c in late]
    assert anthropic_standin.calls == model_calls + 1  # only workspace one's message reached the model
    assert not await records.workspace_of("TBBB") and await records.installer("-:TBBB") is None

    listed = await cli(redis.url, "cases", "list", "--community", "TBBB")
    assert "TBBB" in listed  # kept for the retention period after the uninstall
    assert "Deleted 1 cases" in await cli(redis.url, "forget-community", "TBBB", "--yes")
    assert "No cases." in await cli(redis.url, "cases", "list", "--community", "TBBB")
    await no_clear_secrets(standin, redis.url, a, b)


async def test_forged_or_replayed_states_and_redirects_without_a_code_are_refused(fleet, oauth_standin, redis,
                                                                                  session):
    standin = oauth_standin
    a, b = await fleet(THREADGUARD_LOG_LEVEL="DEBUG")  # the log scan below covers DEBUG lines too
    Team(standin, "TAAA", "CAAA")
    url, cookie = await begin_install(session, a)
    query = await authorize(session, standin, url, "TAAA", "UADMIN1")

    forged = {**query, "state": "forged-state"}
    assert await redirect(session, a, forged, "forged-state") == 401  # the browser agrees, Redis never issued it
    assert await redirect(session, a, query, None) == 400  # another browser (no state cookie)
    assert await redirect(session, b, {"state": query["state"]}, cookie) == 400  # no code
    assert standin.attempts("oauth.v2.access") == []
    assert "inst:" not in await redis_dump(redis.url)

    assert await redirect(session, b, query, cookie) == 200  # the real one, at another worker
    assert await redirect(session, a, query, cookie) == 401  # replayed: the state was consumed
    assert len(standin.attempts("oauth.v2.access")) == 1
    await no_clear_secrets(standin, redis.url, a, b)


async def test_a_token_expiring_mid_load_is_renewed_once_across_two_workers(
        fleet, oauth_standin, anthropic_standin, redis, session):
    standin = oauth_standin
    standin.token_rotation, standin.token_lifetime = True, 30
    Model(anthropic_standin)
    a, b = await fleet(SLACK_TOKEN_REFRESH_BEFORE="15", THREADGUARD_LOG_LEVEL="DEBUG")  # renewed from 15 s on
    team = Team(standin, "TAAA", "CAAA")
    await install(session, standin, a, a, team.id, "UADMIN1")
    first_token = standin.tokens_of(team.id)[0]
    installed = time.monotonic()

    roots = []
    for worker in (a, b):
        mention = team.mention(f"thread {len(roots)}", "UALICE")
        roots.append(mention["event"]["ts"])
        assert await post_event(session, worker.url, mention) == 200
    sent = []
    n = 0
    while time.monotonic() - installed < 21:  # the renewal falls in the middle of the load
        texts = [f"message {n}", f"message {n + 1}"]  # both workers at once
        events = [team.reply(text, root, "UALICE") for text, root in zip(texts, roots, strict=True)]
        statuses = await asyncio.gather(*(post_event(session, w.url, e) for w, e in zip((a, b), events, strict=True)))
        assert statuses == [200, 200]
        sent.extend(texts)
        n += 2
        await asyncio.sleep(0.4)
    await until(lambda: all(answered(standin, team)[t] for t in sent), 30, "every message answered")

    assert standin.refreshes == {team.id: 1}
    assert all(answered(standin, team)[t] == 1 for t in sent)  # none lost, none twice
    refused = [(c.method, c.error) for c in standin.calls if c.error]
    assert refused == []
    used = {c.token for c in standin.calls if c.method == "chat.postMessage"}
    assert first_token in used and len(used) == 2  # the first token, then the renewed one
    await no_clear_secrets(standin, redis.url, a, b)


async def cli(url: str, *args: str) -> str:
    result = await asyncio.to_thread(_cli, url, *args)
    assert result.exit_code == 0, result.output
    return str(result.output)


def _client(url: str) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, decode_responses=True)


async def test_an_org_wide_installation_serves_the_workspaces_of_its_org(make_env, standin):
    """Enterprise Grid: one installation for the org, kept under the org; an event from one of its
    workspaces is answered with the org's token, and so is a later delivery for that workspace."""
    import types

    from tests.e2e.slack.conftest import serve

    grid = standin.add_workspace("TGRID", channels=("CGRID",), enterprise_id="E1", org_wide=True)
    env = await make_env(bot_token=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                         token_encryption_key=Fernet.generate_key().decode(),
                         authorization_url=standin.authorization_url)
    await env.bot.start()
    async with serve(env) as endpoint:
        site = types.SimpleNamespace(port=urllib.parse.urlsplit(endpoint.url).port)
        url, cookie = await begin_install(endpoint.session, site)
        query = await authorize(endpoint.session, standin, url, "TGRID", "UORGADMIN")
        assert await redirect(endpoint.session, site, query, cookie) == 200
        stored = await env.bot.workspaces.store.async_find_installation(enterprise_id="E1", team_id=None,
                                                                        is_enterprise_install=True)
        assert stored is not None and stored.user_id == "UORGADMIN" and stored.team_id is None

        team = Team.__new__(Team)
        team.id, team.channel, team.workspace = "TGRID", "CGRID", grid
        mention = team.mention("hello", "UALICE")
        mention.update(enterprise_id="E1", is_enterprise_install=True)
        mention["authorizations"][0].update(enterprise_id="E1", is_enterprise_install=True)
        status, _ = await endpoint.event(mention)
        assert status == 200
        await env.settle()
        posts = [c for c in standin.calls if c.method in ("chat.postMessage", "chat.startStream")]
        assert posts and {c.team for c in posts} == {"TGRID"} and not [c for c in standin.calls if c.error]
        assert await env.bot.workspaces.records.workspace_of("TGRID") == "E1:-"  # for deliveries anywhere
