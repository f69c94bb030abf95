"""The operations side of a long-running process: safe start-up checks, ``/metrics``, ``/healthz`` and
``/readyz`` on their own port.

``/healthz`` says the process is alive. ``/readyz`` answers 200 only once the process takes traffic (its
listener is bound, its gateway or socket connected) and while Redis answers a PING, and lists what the
process was explicitly allowed to run without (``--demo``, ``--embedded-store``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from adapters.metrics import PrometheusMetrics
from bot.bootstrap import Runtime
from bot.deferred_model import DeferredModel, warm_up
from bot.errors import StoreRefusingWrites, ThreadguardError
from config.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

#: What each explicit allowance means, said at every start and in ``/readyz``.
ALLOWANCES = {
    "embedded_store": "the embedded store: conversations and cases live in this process's "
                      "memory and are lost at every restart",
    "demo_model": "the offline demo model: members are answered by canned demo text, not by Claude",
}


@dataclass(frozen=True)
class Missing:
    variable: str
    flag: str
    meaning: str
    #: What running without it means (the ``ALLOWANCES`` key).
    allowance: str


def production_gaps(settings: Settings, *, needs_model: bool) -> tuple[list[Missing], list[str]]:
    """What a real deployment lacks: (missing settings, allowance names those settings map to)."""
    missing: list[Missing] = []
    url = settings.redis.url.get_secret_value() if settings.redis.url else ""
    if not url:
        missing.append(Missing("REDIS_URL", "--embedded-store", "where conversations and cases are kept",
                               "embedded_store"))
    key = settings.anthropic.api_key.get_secret_value() if settings.anthropic.api_key else ""
    if needs_model and not key:
        missing.append(Missing("ANTHROPIC_API_KEY", "--demo", "the Claude API key", "demo_model"))
    return missing, [m.allowance for m in missing]


def refusal(command: str, missing: list[Missing]) -> str:
    """The message a refused start prints: which variable is missing and how to go on."""
    lines = [f"threadguard {command} will not start without its production settings."]
    lines += [f"  {m.variable} is not set ({m.meaning}). Set it, or pass {m.flag} to run with "
              f"{ALLOWANCES[m.allowance]}." for m in missing]
    return "\n".join(lines)


class OpsServer:
    """``/metrics``, ``/healthz``, ``/readyz`` for one process."""

    def __init__(self, runtime: Runtime, metrics: PrometheusMetrics, allowances: list[str], *,
                 ping_timeout: float = 2.0, needs_model: bool = False) -> None:
        self.runtime = runtime
        #: A bot process answers members: it is ready only once its model client is loaded too.
        self.needs_model = needs_model
        self.metrics = metrics
        self.allowances = list(allowances)
        self.ping_timeout = ping_timeout
        for name in allowances:
            metrics.degraded.labels(name).set(1)

    def app(self) -> web.Application:
        application = web.Application()
        application.add_routes([web.get("/metrics", self._metrics), web.get("/healthz", self._health),
                                web.get("/readyz", self._ready)])
        return application

    async def _metrics(self, _: web.Request) -> web.Response:
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _ready(self, _: web.Request) -> web.Response:
        redis = await self.redis_state()
        serving = self.runtime.serving
        model = self.model_loaded()
        ready = redis == "ok" and serving and model
        self.metrics.ready.set(1 if ready else 0)
        body = {"ready": ready, "serving": serving, "redis": redis,
                "allowed": {name: ALLOWANCES[name] for name in self.allowances}}
        if not model:
            body["model"] = "loading"
        return web.Response(text=json.dumps(body), status=200 if ready else 503, content_type="application/json")

    def model_loaded(self) -> bool:
        model = self.runtime.model
        return not self.needs_model or not isinstance(model, DeferredModel) or model.loaded

    async def redis_state(self) -> str:
        """``ok``; ``refusing writes`` when Redis answers but stores nothing (out of memory under
        ``noeviction``, a read-only replica): no message could be accepted; or ``unreachable``."""
        try:
            await asyncio.wait_for(self.runtime.store.health.writable(), self.ping_timeout)
        except StoreRefusingWrites:
            return "refusing writes"
        except (ThreadguardError, TimeoutError, OSError):
            return "unreachable"
        return "ok"


@contextlib.asynccontextmanager
async def ops_endpoint(runtime: Runtime, metrics: PrometheusMetrics, allowances: list[str], *,
                       needs_model: bool = False) -> AsyncIterator[None]:
    """Serve the ops endpoint while the body runs (not at all when THREADGUARD_METRICS_PORT is 0)."""
    ops = runtime.settings.ops
    if not ops.metrics_port:
        yield
        return
    server = OpsServer(runtime, metrics, allowances, needs_model=needs_model)
    runner = web.AppRunner(server.app(), shutdown_timeout=1, access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, ops.metrics_host, ops.metrics_port).start()
        except OSError as exc:  # the bot still serves its members; only the ops endpoint is missing
            log.error("cannot serve /metrics, /healthz and /readyz on %s:%d (%s): give each process on this "
                      "host its own THREADGUARD_METRICS_PORT", ops.metrics_host, ops.metrics_port,
                      exc.strerror or type(exc).__name__)
        else:
            log.info("metrics and health on http://%s:%d (/metrics, /healthz, /readyz)", ops.metrics_host,
                     ops.metrics_port)
        yield
    finally:
        await runner.cleanup()


def _warmed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:  # the first turn tries again (and says why)
        log.warning("the model client did not load: %s", type(task.exception()).__name__)


async def serve_operated(runtime: Runtime, metrics: PrometheusMetrics, allowances: list[str],
                         run: Callable[[PrometheusMetrics], Awaitable[T]], *, needs_model: bool = False) -> T:
    """Say what was allowed, serve the ops endpoint with ``metrics`` (the registry the runtime was built
    with: ``build_runtime(..., metrics=metrics)``), and run the process's main work. ``needs_model``: a bot
    process loads its model client while it connects, and is ready only once it is loaded."""
    for name in allowances:
        log.warning("running with %s (explicitly allowed)", ALLOWANCES[name])
    warming = asyncio.create_task(warm_up(runtime.model), name="threadguard model warm-up") if needs_model else None
    if warming is not None:
        warming.add_done_callback(_warmed)
    try:
        async with ops_endpoint(runtime, metrics, allowances, needs_model=needs_model):
            return await run(metrics)
    finally:
        if warming is not None and not warming.done():
            warming.cancel()
