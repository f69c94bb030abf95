"""Stopping a process's pipeline (what SIGTERM does), on a real redis-server: every running turn gets the
whole grace, not only the first to finish; a turn still running after it is withdrawn and its lease
handed back at once, so another worker answers the message, once."""

from __future__ import annotations

import asyncio

from bot.bootstrap import build_runtime
from bot.store import ClaimStatus
from bot.types import Author, IncomingMessage, ReplyKind, ThreadRef
from config.communities import Communities, CommunityConfig
from config.settings import RedisSettings, Settings, StoreSettings
from tests.integration.engine_helpers import CollectingSink
from tests.integration.scripted_model import ScriptedModel

ANN = Author("u-ann", "Ann")


class Paced(ScriptedModel):
    """Answers every message; a message text ``wait <seconds>`` takes that long."""

    def __init__(self) -> None:
        super().__init__(lambda text: [])

    async def respond(self, request, sink=None):  # type: ignore[no-untyped-def]
        text = request.messages[-1].blocks[0].text  # type: ignore[union-attr]
        self.in_flight += 1
        try:
            await asyncio.sleep(float(text.split()[-1]))
        finally:
            self.in_flight -= 1
        return await super().respond(request, sink)


class Stream:
    """What an adapter streams the answer into; ``discard`` withdraws what it showed."""

    def __init__(self) -> None:
        self.discarded = 0

    async def __call__(self, delta: str) -> None:
        return None

    async def discard(self) -> None:
        self.discarded += 1


def runtime(client, model):
    settings = Settings(redis=RedisSettings(url=None), store=StoreSettings(lock_ttl_seconds=30))
    return build_runtime(settings, model=model, redis=client, communities=Communities(CommunityConfig()))


def thread(n: int) -> ThreadRef:
    return ThreadRef("slack", "T1", "C1", f"1700000000.{n:06d}")


async def test_every_running_turn_finishes_within_the_grace(redis_client):
    model = Paced()
    rt = runtime(redis_client, model)
    try:
        turns = [asyncio.create_task(rt.member_actions.handle_message(IncomingMessage(thread(n), ANN, f"wait {s}",
                                                                               message_id=f"m{n}")))
                 for n, s in enumerate((0.2, 0.8, 1.4))]
        while model.in_flight < 3:
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert not await rt.pipeline.idle(0.1)  # still working: waited 0.1 s, then said so
        assert 0.09 <= loop.time() - began < 0.15 + 0.5
        await rt.pipeline.stop(grace=10)
        assert not rt.pipeline.has_capacity()
        assert [[r.kind for r in o.replies] for o in await asyncio.gather(*turns)] == [[ReplyKind.ANSWER]] * 3
        assert model.calls == 3
        for n in range(3):  # each committed, its inbox empty and its lease given back
            assert (await rt.store.inbox.claim(thread(n))).status is ClaimStatus.EMPTY
            assert (await rt.member_actions.thread_state(thread(n))).ladder.turn == 1
    finally:
        await rt.aclose()


async def test_a_turn_past_the_grace_is_handed_back_and_answered_once_elsewhere(redis_client):
    model = Paced()
    rt, other = runtime(redis_client, model), runtime(redis_client, model)
    sink = CollectingSink()
    other.pipeline.register_sink("slack", sink)
    t = thread(9)
    try:
        stream = Stream()
        turn = asyncio.create_task(
            rt.member_actions.handle_message(IncomingMessage(t, ANN, "wait 1.0", message_id="m9"), stream))
        while model.in_flight < 1:
            await asyncio.sleep(0.01)
        await rt.pipeline.stop(grace=0.1)
        assert (await turn).queued  # not answered here: the caller is told it goes on elsewhere
        assert stream.discarded == 1  # and whatever it streamed is withdrawn
        assert (await rt.member_actions.thread_state(t)).ladder.turn == 0  # nothing committed
        # the lease (30 s) was handed back: another worker takes the thread over at once
        assert await other.pipeline.take_over(t) is ClaimStatus.OWNER
        assert await other.pipeline.idle(10)
        assert [o.replies[0].kind for o in sink.outcomes] == [ReplyKind.ANSWER]
        _, log = await other.store.turns.load(t)
        assert [e.kind.value for e in log].count("user") == 1
    finally:
        await rt.aclose()
        await other.aclose()
