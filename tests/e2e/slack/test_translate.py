"""The adapter's pure translation: links, mentions, escaping, splitting, and the stream's update pacing."""

from __future__ import annotations

import asyncio
import itertools
import time

from adapters.slack.answer import StreamingReply
from adapters.slack.translate import Identity, clean_text, escape, parse_thread_link, permalink
from adapters.text import split_text

IDENTITY = Identity(user_id="UBOT", url="https://example.slack.com/")


def test_thread_links_round_trip():
    link = permalink(IDENTITY, "C1", "1700000000.000100")
    assert link == "https://example.slack.com/archives/C1/p1700000000000100"
    assert parse_thread_link(f"<{link}>") == ("C1", "1700000000.000100")
    reply = permalink(IDENTITY, "C1", "1700000009.000200", thread_ts="1700000000.000100")
    assert parse_thread_link(reply) == ("C1", "1700000000.000100")
    assert parse_thread_link("end it please") is None
    assert permalink(Identity(), "C1", "1.2") is None


def test_text_in_and_out():
    assert clean_text("<@UBOT>  what is &lt;b&gt; &amp; co?", "UBOT") == "what is <b> & co?"
    assert escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"


def test_split_prefers_paragraphs_then_words():
    text = "a" * 150 + "\n\n" + "b " * 100
    pieces = split_text(text, 200)
    assert pieces[0] == "a" * 150
    assert all(len(p) <= 200 for p in pieces)
    assert split_text("x" * 450, 200) == ["x" * 200, "x" * 200, "x" * 50]


class _FakePoster:
    limit = 50
    budget = None
    headroom = 1

    @staticmethod
    def may_stream(workspace, channel, recipient):
        return False

    def __init__(self):
        self.posts: list[str] = []
        self.updates: list[tuple[str, str]] = []
        self.times: list[float] = []

    @staticmethod
    def workspace_of(where):
        return "-"

    async def post(self, channel, thread_ts, text, *, where, **_):
        self.posts.append(text)
        self.times.append(time.monotonic())
        return f"ts{len(self.posts)}"

    async def update_streamed(self, channel, ts, text, *, where):
        self.updates.append((ts, text))
        self.times.append(time.monotonic())
        return True

    async def delete(self, channel, ts, *, where):
        return True


async def test_stream_never_waits_shows_the_latest_text_paced_and_continues_past_the_limit():
    poster = _FakePoster()
    stream = StreamingReply(poster, "C1", "1.0", where="t", interval=0.15)
    started = time.monotonic()
    for word in ["one ", "two ", "three ", "four "]:
        await stream(word)
        await asyncio.sleep(0.06)
    await stream("x" * 40 + " tail")
    assert time.monotonic() - started < 0.6  # feeding the stream never waited on the poster
    finishing = time.monotonic()
    await stream.finish()
    assert poster.posts[0] == "one"
    assert poster.updates[-1] == ("ts1", "one two three four")  # the first message ends with the latest text
    assert poster.posts[1:] == ["x" * 40 + " tail"] and stream.messages == ["ts1", "ts2"]
    paced = [t for t in poster.times if t < finishing]  # finish() shows the rest at once
    assert len(paced) >= 2
    assert all(b - a >= 0.14 for a, b in itertools.pairwise(paced))  # at most one call per interval
    assert len(poster.updates) == len(set(poster.updates))  # the same text is never sent twice
