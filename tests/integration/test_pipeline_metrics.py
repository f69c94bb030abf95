"""The pipeline's own metrics: the inbox depth seen when a message is accepted, and the threads the
recovery loop takes over, on a real redis-server."""

from __future__ import annotations

import asyncio

from bot.bootstrap import build_runtime
from bot.metrics import Metrics
from bot.store.inbox_entry import InboxEntry, ReplyTarget, UnknownThread
from bot.types import Author, IncomingMessage, ReplyKind, ThreadRef
from config.communities import Communities, CommunityConfig
from config.settings import RedisSettings, Settings
from tests.integration.engine_helpers import CollectingSink
from tests.integration.scripted_model import ScriptedModel

T = ThreadRef("slack", "T1", "C1", "1700000000.000200")
ALICE = Author("u1", "alice")


class Recorded(Metrics):
    def __init__(self) -> None:
        self.depths: list[int] = []
        self.takeovers = 0

    def inbox_depth(self, depth: int) -> None:
        self.depths.append(depth)

    def lease_takeover(self) -> None:
        self.takeovers += 1


def message(n: int) -> IncomingMessage:
    return IncomingMessage(T, ALICE, f"hello {n}", message_id=f"m{n}", event_id=f"Ev{n}")


async def test_inbox_depth_and_takeovers_reach_the_metrics(redis_client):
    metrics = Recorded()
    model = ScriptedModel(lambda text: [])
    rt = build_runtime(Settings(redis=RedisSettings(url=None)), model=model, redis=redis_client,
                       communities=Communities(CommunityConfig()), metrics=metrics)
    sink = CollectingSink()
    rt.pipeline.register_sink("slack", sink)
    try:
        # two messages stored without an owner (their process went away before answering)
        for n in (1, 2):
            entry = InboxEntry(message(n).dedupe_id, message(n), ReplyTarget(ALICE.id))
            result = await rt.store.inbox.ingest(entry, reminder_cooldown=0, unknown=UnknownThread.ACCEPT,
                                                 take_lease=False, max_inbox=10, max_turns=100)
            assert result.queued == n
        assert await rt.worker.recover_once() == 1
        assert metrics.takeovers == 1
        assert await rt.pipeline.idle(10)
        assert [o.replies[0].kind for o in sink.outcomes] == [ReplyKind.ANSWER, ReplyKind.ANSWER]
        # a message accepted while the thread is free is the only one waiting; one sent while its answer
        # is being written waits behind it
        model.delay = 0.2
        first = asyncio.create_task(rt.member_actions.handle_message(message(3)))
        await asyncio.sleep(0.05)
        second = await rt.member_actions.handle_message(message(4))
        assert all(o.replies[0].kind is ReplyKind.ANSWER for o in (await first, second))
        assert metrics.depths == [1, 2]
        assert await rt.worker.recover_once() == 0 and metrics.takeovers == 1
    finally:
        await rt.aclose()
