"""What reaches the Slack HTTP endpoint from anyone, against a real ``threadguard slack --http`` process.

Unsigned garbage, bad timestamps, forged signatures, invalid UTF-8, deep JSON, and signed events with lone
surrogates, wrong types or missing fields: never a 500 (Slack retries those), never a traceback in the log,
and the worker answers members as before afterwards.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.slack.conftest import Payloads, thread_texts
from tests.support.anthropic_standin import AnthropicStandin, reply
from tests.support.redis_servers import RedisServer
from tests.support.slack_standin import SlackStandin
from tests.support.workers import Worker, newest_user_text, sign, worker_env

pytestmark = pytest.mark.timeout(180)


@pytest_asyncio.fixture
async def worker(standin: SlackStandin, anthropic_standin: AnthropicStandin) -> AsyncIterator[Worker]:
    anthropic_standin.responder = lambda body: reply("Answer to: " + newest_user_text(body))
    with RedisServer() as server:
        w = Worker("fuzz", worker_env(server.url, standin.base_url, anthropic_standin.base_url)).start()
        try:
            await w.ready()
            yield w
        finally:
            w.close()


async def send(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> int:
    async with session.post(url, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


def signed(body: bytes, *, at: int | None = None, content_type: str = "application/json") -> dict[str, str]:
    ts = int(time.time()) if at is None else at
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sign(body.decode("utf-8", "surrogateescape"), ts)
            if _utf8(body) else _sign_bytes(body, ts)}


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _sign_bytes(body: bytes, ts: int) -> str:
    import hashlib
    import hmac

    from tests.support.workers import SIGNING_SECRET
    return "v0=" + hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()


def unsigned_cases(rng: random.Random) -> list[tuple[bytes, dict[str, str]]]:
    now = int(time.time())
    body = b'{"type":"event_callback"}'
    cases: list[tuple[bytes, dict[str, str]]] = [
        (rng.randbytes(200), {}),
        (b"\xff\xfe\xfa not utf-8", {"Content-Type": "application/json"}),
        (b"[" * 100_000, {"Content-Type": "application/json"}),
        (body, {"X-Slack-Signature": "v0=00"}),
        (body, {"X-Slack-Request-Timestamp": str(now)}),
    ]
    for stamp in ("abc", "", "-1", "1e10", "\u0661\u0662\u0663", "99999999999999999999999", str(now - 3600),
                  str(now + 3600), " 12", "0x10"):
        cases.append((body, {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sign(body.decode(), now)}))
    for signature in ("v0=deadbeef", "v0=\u00e9\u00e9", "", "v1=" + "0" * 64, sign(body.decode() + " ", now)):
        cases.append((body, {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": signature}))
    return cases


def signed_malformed() -> list[tuple[bytes, str]]:
    """Signed bodies that are not something Slack sends (content type beside each)."""
    form = "application/x-www-form-urlencoded"
    return [
        (b"\xff\xfe\xfa not utf-8", "application/json"),
        (b"[" * 100_000, "application/json"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "application/json"),
        (b"not json at all", "application/json"),
        (b"", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'"just a string"', "application/json"),
        (b"null", "application/json"),
        (b"payload=%7Bnot-json", form),
        (b"payload=" + b"%5B" * 3000, form),
        (b"command=/threadguard&text=%ED%A0%80", form),
    ]


def broken_events(payloads: Payloads, rng: random.Random) -> list[dict[str, Any]]:
    """Signed event payloads with lone surrogates, wrong types and missing fields."""
    base = payloads.mention("hello there")
    cases: list[dict[str, Any]] = []

    def variant(change: Any) -> None:
        body = copy.deepcopy(base)
        body["event_id"] = f"Ev{rng.randrange(10**9)}"
        change(body)
        cases.append(body)

    variant(lambda b: b.update(event_id="Ev\ud800x"))
    variant(lambda b: b["event"].update(channel="C\udc00"))
    variant(lambda b: b["event"].update(text="hi \ud83d there"))
    variant(lambda b: b["event"].update(user="U\udfff"))
    variant(lambda b: b.update(event=None))
    variant(lambda b: b.update(event=[1, 2]))
    variant(lambda b: b.update(event="text"))
    variant(lambda b: b["event"].pop("channel"))
    variant(lambda b: b["event"].pop("ts"))
    variant(lambda b: b["event"].pop("user"))
    variant(lambda b: b["event"].pop("type"))
    variant(lambda b: b.update(team="T0TEAM"))
    variant(lambda b: b.update(team_id=["T"]))
    variant(lambda b: b.update(type=5))
    variant(lambda b: b.update(event_id={"id": 1}))
    changed = payloads.message("edit", None)
    changed["event"].update(subtype="message_changed", message="not an object")
    cases.append(changed)
    files = payloads.message("files", None, subtype="file_share")
    files["event"]["files"] = "not a list"
    cases.append(files)
    junk: list[Any] = [None, 0, 1.5, -1, True, [], {}, [None], {"a": {"b": []}}, "", "\ud800", "x" * 5000]
    for name in ("text", "channel", "ts", "thread_ts", "user", "type", "subtype", "channel_type", "team",
                 "bot_id", "event_ts", "files"):
        for _ in range(3):
            value = rng.choice(junk)
            variant(lambda b, n=name, v=value: b["event"].__setitem__(n, v))
    for _ in range(10):  # a mix: two fields at once
        a, b_ = rng.sample(["text", "channel", "ts", "user", "thread_ts", "type"], 2)
        va, vb = rng.choice(junk), rng.choice(junk)
        variant(lambda b, a=a, b_=b_, va=va, vb=vb: (b["event"].__setitem__(a, va), b["event"].__setitem__(b_, vb)))
    return cases


async def test_malformed_requests_get_no_500_and_no_traceback(worker: Worker, standin: SlackStandin,
                                                              payloads: Payloads) -> None:
    rng = random.Random(16)
    statuses: list[tuple[str, int]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        for body, headers in unsigned_cases(rng):
            statuses.append(("unsigned", await send(session, worker.url, body, headers)))
        for body, content_type in signed_malformed():
            statuses.append(("malformed", await send(session, worker.url, body,
                                                     signed(body, content_type=content_type))))
        for event in broken_events(payloads, rng):
            body = json.dumps(event).encode()  # lone surrogates go out as \\udXXX escapes, as JSON allows
            statuses.append(("event", await send(session, worker.url, body, signed(body))))

        # the worker still answers a member afterwards
        mention = payloads.mention("still there?")
        body = json.dumps(mention).encode()
        assert await send(session, worker.url, body, signed(body)) == 200
        root = mention["event"]["ts"]
        await standin.wait_for(lambda: any("still there?" in t for t in thread_texts(standin, root)), 20)

    assert len(statuses) >= 64
    assert [s for s in statuses if s[1] >= 500] == []
    assert {s for kind, s in statuses if kind == "unsigned"} == {401}
    assert {s for kind, s in statuses if kind == "malformed"} <= {400, 200}
    assert {s for kind, s in statuses if kind == "event"} == {200}
    log = worker.log()
    assert "Traceback" not in log, log[-3000:]
    # one line per refused request, no more
    refused = [line for line in log.splitlines() if "answered 401" in line or "answered 400" in line]
    assert len(refused) == sum(1 for _, s in statuses if s in (400, 401))
    assert worker.alive
