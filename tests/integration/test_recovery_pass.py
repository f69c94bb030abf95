"""One pass of the recovery loop on a real redis-server: a thread this process is already answering is
passed over, and the due threads after it in its shard are still taken in the same pass."""

from __future__ import annotations

import asyncio
import time

from bot.bootstrap import build_runtime
from bot.store import ClaimStatus, keys
from bot.store.inbox_entry import InboxEntry, ReplyTarget, UnknownThread
from bot.types import Author, IncomingMessage, ReplyKind, ThreadRef
from config.communities import Communities, CommunityConfig
from config.settings import RedisSettings, Settings, StoreSettings
from tests.integration.engine_helpers import CollectingSink
from tests.integration.scripted_model import ScriptedModel

ALICE = Author("u1", "alice")
A = ThreadRef("slack", "T1", "C1", "1700000000.000100")


def same_shard_as(thread: ThreadRef) -> ThreadRef:
    """Another thread whose inbox is registered in the same due shard."""
    for n in range(1000):
        other = ThreadRef("slack", "T1", "C1", f"1700000001.{n:06d}")
        if keys.due(other.key) == keys.due(thread.key):
            return other
    raise AssertionError("no thread in the same shard")


async def test_a_thread_already_being_answered_here_does_not_end_the_pass(redis_client):
    model = ScriptedModel(lambda text: [], delay=3.0)
    settings = Settings(redis=RedisSettings(url=None), store=StoreSettings(lock_ttl_seconds=0.3))
    rt = build_runtime(settings, model=model, redis=redis_client, communities=Communities(CommunityConfig()))
    sink = CollectingSink()
    rt.pipeline.register_sink("slack", sink)
    b = same_shard_as(A)
    try:
        answering = asyncio.create_task(
            rt.member_actions.handle_message(IncomingMessage(A, ALICE, "long", message_id="a1")))
        while not rt.pipeline.is_draining(A.key):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.45)  # A's turn outlives its first lease (renewed): A is due, and drained here
        waiting = IncomingMessage(b, ALICE, "waiting", message_id="b1")
        entry = InboxEntry(waiting.dedupe_id, waiting, ReplyTarget(ALICE.id))
        await rt.store.inbox.ingest(entry, reminder_cooldown=0, unknown=UnknownThread.ACCEPT, take_lease=False,
                                    max_inbox=10, max_turns=100)  # its process went away
        due = [key for key, _ in await rt.store.inbox.due_threads("slack", int(time.time() * 1000), 50)]
        assert due == [A.key, b.key]  # A comes first in the pass
        assert await rt.worker.recover_once() == 1
        assert rt.pipeline.is_draining(b.key)
        assert (await answering).replies[0].kind is ReplyKind.ANSWER
        assert await rt.pipeline.idle(10)
        assert [o.thread for o in sink.outcomes] == [b] and sink.outcomes[0].replies[0].kind is ReplyKind.ANSWER
        assert model.calls == 2  # A once (not taken over), b once
    finally:
        await rt.aclose()



async def test_a_held_thread_is_looked_at_again_when_its_lease_could_run_out_and_an_empty_one_is_forgotten(
        redis_client):
    model = ScriptedModel(lambda text: [], delay=3.0)
    settings = Settings(redis=RedisSettings(url=None), store=StoreSettings(lock_ttl_seconds=1))
    owner, other = (build_runtime(settings, model=model, redis=redis_client,
                                  communities=Communities(CommunityConfig())) for _ in range(2))
    other.pipeline.register_sink("slack", CollectingSink())
    try:
        answering = asyncio.create_task(
            owner.member_actions.handle_message(IncomingMessage(A, ALICE, "hi", message_id="a1")))
        while not owner.pipeline.is_draining(A.key):
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.3)  # past the first lease (renewed by the owner): A is due
        now = int(time.time() * 1000)
        assert [key for key, _ in await other.store.inbox.due_threads("slack", now, 10)] == [A.key]
        assert await other.pipeline.take_over(A) is ClaimStatus.HELD
        [(_, due_at)] = await other.store.inbox.due_threads("slack", 2**50, 10)
        # looked at again when the owner's lease (1 s) could run out: not before, not a minute later
        assert now < due_at <= int(time.time() * 1000) + 1_100
        await answering
        assert await owner.pipeline.idle(10)
        await asyncio.sleep(max(0.0, due_at / 1000 - time.time()) + 0.05)
        assert await other.worker.recover_once() == 0  # its inbox is empty: the thread is forgotten
        assert await other.store.inbox.due_threads("slack", 2**50, 10) == []
        assert model.calls == 1
    finally:
        await owner.aclose()
        await other.aclose()
