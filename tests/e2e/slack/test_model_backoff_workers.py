"""The Messages API's rate limits with real ``threadguard slack --http`` worker processes: during a load of
200 messages over two workers the Messages API stand-in answers 429 with ``retry-after`` and rate-limit
headers for a while. The back-off is shared through Redis: no message is lost, none is answered twice,
every member is answered after it, in order, and a member whose wait passes a few seconds is told once
that the message is queued."""

from __future__ import annotations

import asyncio
import collections
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.slack.conftest import Payloads
from tests.e2e.slack.test_pipeline_faults import answers, no_tracebacks, redis_target, session, until, workers
from tests.support.anthropic_standin import AnthropicStandin, Script, http_error, reply
from tests.support.slack_standin import SlackStandin
from tests.support.workers import newest_user_text, post_event

__all__ = ["redis_target", "session", "workers"]  # fixtures shared with the pipeline fault tests

pytestmark = pytest.mark.timeout(240)

ANSWER = "Answer to: "
BUSY = "I'm busy right now: your message is queued, and I'll answer it as soon as I can."
MEMBERS, EACH = 20, 10
WAIT_S = 3


class RateLimitedModel:
    """Answers ``Answer to: <text>``; from the 30th request on, answers 429 for ``WAIT_S`` seconds."""

    def __init__(self, standin: AnthropicStandin) -> None:
        self.standin = standin
        self.limited_until = 0.0
        self.refused = 0
        standin.responder = self.respond

    def respond(self, body: dict[str, Any]) -> Script:
        now = time.time()
        if len(self.standin.bodies) == 30:
            self.limited_until = now + WAIT_S
        if now < self.limited_until:
            self.refused += 1
            reset = datetime.fromtimestamp(self.limited_until, tz=UTC)
            return http_error(429, headers={
                "retry-after": str(WAIT_S), "anthropic-ratelimit-requests-limit": "50",
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": reset.isoformat()})
        return reply(ANSWER + newest_user_text(body), delay=0.02)


@pytest.mark.parametrize("redis_target", ["server"], indirect=True)
async def test_two_hundred_messages_wait_out_the_apis_rate_limit_and_are_answered_once(
        workers, standin: SlackStandin, anthropic_standin, session):
    model = RateLimitedModel(anthropic_standin)
    a, b = await workers(2, THREADGUARD_BUSY_NOTICE_SECONDS="1")
    payloads = Payloads()
    users = [f"U{i:03d}" for i in range(MEMBERS)]
    openings = [payloads.mention(f"{u} 0", user=u) for u in users]
    roots = {u: o["event"]["ts"] for u, o in zip(users, openings, strict=True)}
    events = [*openings, *(payloads.message(f"{u} {n}", roots[u], user=u) for n in range(1, EACH) for u in users)]
    for i, event in enumerate(events):  # 200 messages, alternating between the workers
        assert await post_event(session, (a, b)[i % 2].url, event) == 200

    def done() -> bool:
        return all(sum(answers(standin, roots[u]).values()) >= EACH for u in users)

    await until(done, 120, "every member's answers")
    await asyncio.sleep(1.5)  # anything answered twice would show by now
    assert model.refused > 0, "the stand-in never answered 429"
    for u in users:
        shown = answers(standin, roots[u])
        assert shown == {f"{u} {n}": 1 for n in range(EACH)}, (u, shown)  # 0 lost, 0 twice
    asked = [newest_user_text(body) for body in anthropic_standin.bodies]
    for u in users:  # each member's messages reached the model in the order they were sent (429s too)
        mine = [t for t in asked if t.split(" ")[0] == u]
        firsts = list(dict.fromkeys(mine))
        assert firsts == [f"{u} {n}" for n in range(EACH)], (u, firsts)
    busy = collections.Counter(str(c.get("user")) for c in standin.calls_to("chat.postEphemeral")
                               if c.get("text") == BUSY)
    assert busy and max(busy.values()) == 1, busy  # told once per member and back-off
    print(f"{model.refused} requests answered 429; {len(asked)} requests for {MEMBERS * EACH} messages")
    errors = [c for c in standin.calls_to("chat.postEphemeral") if "couldn't reach" in str(c.get("text"))]
    assert errors == []
    no_tracebacks(a, b)
