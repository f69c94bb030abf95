"""A channel's persona note and model, saved as community settings, reach the Messages API (through the
real anthropic SDK and the stand-in) in that channel only; the cached prefix stays byte-identical."""

from __future__ import annotations

import itertools

from bot.types import Author, IncomingMessage, ReplyKind, ThreadRef
from config.communities import Communities, CommunityConfig
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
from tests.support.anthropic_standin import reply
from tests.support.prompt_cache import shares_cached_prefix

PERSONA = "You are the pirate helper of #sailing: answer like a ship's captain."


async def test_a_channel_persona_and_model_reach_that_channel_only(redis_client, anthropic_standin):
    from bot.bootstrap import build_runtime

    anthropic_standin.responder = lambda body: reply("Aye.")
    settings = Settings(anthropic=AnthropicSettings(api_key="k", base_url=anthropic_standin.base_url, max_retries=0),
                        redis=RedisSettings(url=None), engine=EngineSettings())
    runtime = build_runtime(settings, redis=redis_client, communities=Communities(CommunityConfig()))
    desk = runtime.community_settings
    ids = itertools.count()

    async def say(thread: ThreadRef, text: str) -> dict:
        outcome = await runtime.member_actions.handle_message(
            IncomingMessage(thread, Author("u1", "m"), text, message_id=f"m{next(ids)}"))
        assert any(r.kind is ReplyKind.ANSWER for r in outcome.replies)
        return anthropic_standin.last_body

    try:
        _, config = await desk.effective("g1")
        values = {**config.model_dump(mode="json"),
                  "channels": {"sailing": {"persona": PERSONA, "model": "claude-sailing-1"}}}
        await desk.save("g1", values, who="discord:ann", expected_version=0)
        sailing, other = ThreadRef("discord", "g1", "sailing", "t1"), ThreadRef("discord", "g1", "lounge", "t2")
        bodies = [await say(sailing, f"turn {n}") for n in range(4)]
        plain = await say(other, "hello")
        elsewhere = await say(ThreadRef("discord", "g2", "sailing", "t3"), "hello")
    finally:
        await runtime.aclose()
    system = bodies[0]["system"][0]["text"]
    assert system.endswith(f"{PERSONA}\n</channel_persona>\n")
    assert bodies[0]["model"] == "claude-sailing-1"
    assert all(b["system"] == bodies[0]["system"] for b in bodies)
    assert all(shares_cached_prefix(a, b) for a, b in itertools.pairwise(bodies[1:]))  # the first has no history
    for body in (plain, elsewhere):
        assert PERSONA not in body["system"][0]["text"] and "channel_persona" not in body["system"][0]["text"]
        assert body["model"] == settings.anthropic.model
    assert system.startswith(plain["system"][0]["text"])  # the rules come first, unchanged
