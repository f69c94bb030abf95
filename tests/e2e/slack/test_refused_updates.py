"""A streamed answer survives a refused ``chat.update``: when the message being streamed into is gone
(``message_not_found``: someone deleted it) or can no longer be edited (``cant_update_message``), the
part it held is posted anew in full and the answer goes on; nothing is thrown away."""

from __future__ import annotations

import asyncio

from bot.model import ModelRequest, ModelResponse, TextBlock
from bot.types import TextSink
from tests.e2e.slack.conftest import CHANNEL, thread_texts
from tests.support.slack_standin import SlackStandin

SENTENCE = "This sentence is part of a long answer that keeps going. "
ANSWER = "\n\n".join([(SENTENCE * 9).strip()] * 10)  # about 5,100 characters: two messages of at most 3,500
FAILED = "Something went wrong"


class LongAnswer:
    """Streams ``ANSWER`` in 100-character deltas; once the 10th is on screen (the reply's updater posts and
    updates in the background), runs ``midway`` (a deletion, say) and goes on."""

    def __init__(self, standin: SlackStandin, midway) -> None:  # type: ignore[no-untyped-def]
        self.standin = standin
        self.midway = midway

    async def respond(self, request: ModelRequest, sink: TextSink | None = None) -> ModelResponse:
        assert sink is not None
        for n, start in enumerate(range(0, len(ANSWER), 100)):
            await sink(ANSWER[start:start + 100])
            await asyncio.sleep(0.01)
            if n == 9:
                await self.standin.wait_for(lambda: self.standin.attempts("chat.update"), timeout=10)
                self.midway()
        return ModelResponse([TextBlock(ANSWER)], "end_turn")


def _first_post(standin: SlackStandin, root: str) -> str:
    [first, *_] = [c["_ts"] for c in standin.calls_to("chat.postMessage", channel=CHANNEL, thread_ts=root)]
    return str(first)


async def test_a_deleted_streaming_message_is_posted_anew(slack_env, http, payloads) -> None:
    standin = slack_env.standin
    slack_env.bot.surface.poster.streams = False  # posted and updated: what a refused update is about
    mention = payloads.mention("tell me a long story")
    root = mention["event"]["ts"]
    slack_env.model._inner = LongAnswer(standin, lambda: standin.delete_message(_first_post(standin, root)))
    await http.event(mention)
    await slack_env.settle()

    deleted = _first_post(standin, root)
    assert deleted not in standin.bot_messages
    tries = [c.error for c in standin.attempts("chat.update") if c.args.get("ts") == deleted]
    assert tries[-1] == "message_not_found" and tries.count("message_not_found") == 1  # then no more tries
    assert len(tries) >= 2  # it was streaming into that message before
    shown = thread_texts(standin, root)
    assert len(shown) == 2 and all(len(t) <= 3500 for t in shown)
    assert "\n\n".join(shown) == ANSWER  # the deleted part in full, then the rest
    assert not any(FAILED in t for t in shown)
    assert slack_env.model.calls == 1


async def test_a_message_that_cannot_be_updated_is_posted_anew(slack_env, http, payloads) -> None:
    standin = slack_env.standin
    slack_env.bot.surface.poster.streams = False  # posted and updated: what a refused update is about
    mention = payloads.mention("tell me a long story")
    root = mention["event"]["ts"]
    slack_env.model._inner = LongAnswer(
        standin, lambda: standin.fail("chat.update", status=200, error="cant_update_message"))
    await http.event(mention)
    await slack_env.settle()

    assert [c.error for c in standin.attempts("chat.update")].count("cant_update_message") == 1
    shown = thread_texts(standin, root)
    # The first message keeps what it showed when the update was refused; the answer follows in full.
    assert len(shown) == 3
    assert ANSWER.startswith(shown[0])
    assert "\n\n".join(shown[1:]) == ANSWER
    assert not any(FAILED in t for t in shown)
