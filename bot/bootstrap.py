"""The composition root: the one place that builds the engine from settings. Tests build through it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from bot.caselog import CaseLog
from bot.deferred_model import DeferredModel
from bot.demo_model import DemoModel
from bot.engine import ConversationEngine, EngineLimits
from bot.metrics import Metrics
from bot.model import ModelClient
from bot.moderation import Moderation
from bot.pipeline import PipelineLimits
from bot.review import ReviewDesk
from bot.store.redis_store import DAY_MS, RedisConversationStore, connect
from bot.store.review import RedisReviewStore
from bot.store.usage import UsageLedger
from bot.worker import Worker, WorkerIntervals
from config.communities import Communities
from config.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything a run mode needs, built once."""

    settings: Settings
    engine: ConversationEngine
    store: RedisConversationStore
    model: ModelClient
    communities: Communities
    #: True when no REDIS_URL was given and the in-process Redis holds the state.
    embedded_store: bool
    usage: UsageLedger
    #: Review state, appeals and members' end records.
    review: ReviewDesk
    #: The moderators' actions on cases (take, review, note, reopen, decide an appeal), for every surface.
    moderation: Moderation
    #: Set by the run mode once it takes traffic (its HTTP listener is bound, its gateway or socket is
    #: connected); ``/readyz`` answers 200 only from then on.
    serving: bool = False
    _worker: Worker | None = field(default=None, repr=False)

    @property
    def cases(self) -> CaseLog:
        return self.engine.cases

    @property
    def worker(self) -> Worker:
        """The background duties every bot process runs (recovery, pending cases, notices)."""
        if self._worker is None:
            section = self.settings.engine
            self._worker = Worker(self.engine, WorkerIntervals(
                recovery=section.recovery_interval, maintenance=section.maintenance_interval,
                notices=section.notice_interval, shutdown_grace=section.shutdown_grace))
        return self._worker

    async def aclose(self) -> None:
        if self._worker is not None:
            await self._worker.stop()
        await self.model.aclose()
        await self.store.aclose()


def build_model(settings: Settings) -> ModelClient:
    section = settings.anthropic
    if section.api_key is None or not section.api_key.get_secret_value():
        log.info("no ANTHROPIC_API_KEY set: using the offline demo model")
        return DemoModel()
    api_key = section.api_key.get_secret_value()

    def build() -> ModelClient:
        from bot.anthropic_client import AnthropicModelClient

        return AnthropicModelClient(
            api_key=api_key, model=section.model, max_tokens=section.max_tokens, base_url=section.base_url,
            timeout=section.timeout, max_retries=section.max_retries, cache_ttl=section.cache_ttl)

    return DeferredModel("bot.anthropic_client", build, label=section.model)


def build_runtime(settings: Settings, *, model: ModelClient | None = None, redis: Any | None = None,
                  communities: Communities | None = None, metrics: Metrics | None = None) -> Runtime:
    """Build the engine and its collaborators. ``redis`` and ``model`` may be injected (tests)."""
    engine_settings = settings.engine
    url = settings.redis.url.get_secret_value() if settings.redis.url else None
    client = redis if redis is not None else connect(url, cluster=settings.redis.cluster)
    store = RedisConversationStore(
        client,
        lock_ttl_ms=int(engine_settings.lock_ttl_seconds * 1000),
        dedupe_ttl_s=engine_settings.dedupe_ttl_seconds,
        idle_ttl_ms=int(engine_settings.idle_ttl_days * DAY_MS),
        ended_ttl_ms=int(engine_settings.case_retention_days * DAY_MS),
        window_cache_threads=engine_settings.window_cache_threads,
    )
    communities = communities or engine_settings.communities()
    chosen = model or build_model(settings)
    limits = EngineLimits(
        max_message_chars=engine_settings.max_message_chars,
        history_token_budget=engine_settings.history_token_budget,
        max_tool_rounds=engine_settings.max_tool_rounds,
        lock_wait_seconds=engine_settings.lock_wait_seconds,
        commit_retry_seconds=engine_settings.commit_retry_seconds,
    )
    pipeline = PipelineLimits(max_inbox=engine_settings.max_inbox, max_thread_turns=engine_settings.max_thread_turns,
                              max_active_threads=engine_settings.max_active_threads)
    ledger = UsageLedger(client, thread_ttl_ms=int(engine_settings.case_retention_days * DAY_MS))
    review_store = RedisReviewStore(client, retention_s=int(engine_settings.case_retention_days * 86_400))
    review = ReviewDesk(review_store, CaseLog(store), communities)
    engine = ConversationEngine(store, chosen, communities, limits, pipeline, usage=ledger, metrics=metrics,
                                member_records=review)
    if metrics is not None:
        store.metrics = metrics
    moderation = Moderation(store, engine.cases, review_store, review, engine, communities)
    return Runtime(settings, engine, store, chosen, communities, embedded_store=redis is None and url is None,
                   usage=ledger, review=review, moderation=moderation)
