"""``/readyz`` says ready only once the run mode takes traffic and while Redis answers: a load balancer or an
orchestrator that trusts it never sends events to a process whose listener is not bound yet."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestClient, TestServer

from adapters.metrics import PrometheusMetrics
from adapters.ops import OpsServer
from bot.bootstrap import build_runtime
from config.communities import Communities
from config.settings import AnthropicSettings, RedisSettings, Settings


async def test_readyz_waits_for_the_listener_then_follows_redis(redis_client):
    runtime = build_runtime(Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None)),
                            redis=redis_client, communities=Communities())
    metrics = PrometheusMetrics()
    async with TestClient(TestServer(OpsServer(runtime, metrics, ["demo_model"]).app())) as client:
        resp = await client.get("/readyz")
        body = json.loads(await resp.text())
        assert resp.status == 503
        assert body["serving"] is False and body["redis"] == "ok" and body["ready"] is False
        assert "demo_model" in body["allowed"]
        assert (await client.get("/healthz")).status == 200  # alive all along

        runtime.serving = True
        resp = await client.get("/readyz")
        body = json.loads(await resp.text())
        assert resp.status == 200 and body == {**body, "ready": True, "serving": True, "redis": "ok"}
        assert "threadguard_ready 1.0" in metrics.exposition().decode()


async def test_readyz_says_not_ready_while_redis_refuses_writes_and_members_are_told_why():
    """A real redis-server out of memory under ``noeviction`` answers pings but refuses every write:
    ``/readyz`` is 503 (``refusing writes``) at once, 200 again once it takes writes; a member's message
    meanwhile gets words that say what happened, not that storage "can't be reached"."""
    import time

    import redis.asyncio as aioredis

    from bot.errors import StoreRefusingWrites, StoreUnavailable
    from bot.types import Author, IncomingMessage, ReplyKind, ThreadRef
    from tests.support.redis_servers import RedisServer

    with RedisServer(extra_args=("--maxmemory-policy", "noeviction")) as server:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        admin = aioredis.Redis.from_url(server.url, decode_responses=True)
        runtime = build_runtime(Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None)),
                                redis=client, communities=Communities())
        runtime.serving = True
        try:
            async with TestClient(TestServer(OpsServer(runtime, PrometheusMetrics(), []).app())) as http:
                assert (await http.get("/readyz")).status == 200
                await admin.config_set("maxmemory", "1")  # everything stored is now over the limit
                full = time.monotonic()
                resp = await http.get("/readyz")
                body = json.loads(await resp.text())
                assert resp.status == 503 and body["redis"] == "refusing writes"
                assert time.monotonic() - full < 5

                msg = IncomingMessage(ThreadRef("console", "c", "ch", "t1"), Author("u1", "Ann"), "hello",
                                      message_id="m1")
                outcome = await runtime.member_actions.handle_message(msg)
                assert [r.kind for r in outcome.replies] == [ReplyKind.ERROR]
                assert outcome.replies[0].text == StoreRefusingWrites.user_message
                assert outcome.replies[0].text != StoreUnavailable.user_message

                await admin.config_set("maxmemory", "0")
                resp = await http.get("/readyz")
                assert resp.status == 200 and json.loads(await resp.text())["redis"] == "ok"
        finally:
            await runtime.aclose()
            await admin.aclose()


async def test_a_bot_process_is_ready_only_once_its_model_client_is_loaded(redis_client):
    from bot.deferred_model import DeferredModel
    from bot.demo_model import DemoModel

    model = DeferredModel("json", DemoModel, label="deferred demo")
    runtime = build_runtime(Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None)),
                            redis=redis_client, communities=Communities(), model=model)
    runtime.serving = True
    server = OpsServer(runtime, PrometheusMetrics(), [], needs_model=True)
    async with TestClient(TestServer(server.app())) as client:
        resp = await client.get("/readyz")
        body = json.loads(await resp.text())
        assert resp.status == 503 and body["serving"] is True and body["model"] == "loading"
        await model.warm()
        resp = await client.get("/readyz")
        assert resp.status == 200 and "model" not in json.loads(await resp.text())
