"""The composition root: the one place that builds the engine, the turn pipeline beside it, the use cases
over both and the background worker, from settings. Tests build through it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from bot.backoff import ModelBackoff
from bot.case_filing import CaseFiling
from bot.caselog import CaseLog
from bot.clock import Clock, OffsetFileClock, SystemClock
from bot.community_settings import CommunitySettings
from bot.deferred_model import DeferredModel
from bot.demo_model import DemoModel
from bot.engine import ConversationEngine
from bot.limits import Limiter
from bot.member_actions import MemberActions
from bot.metrics import Metrics
from bot.model import ModelClient
from bot.moderation import Moderation
from bot.pipeline import TurnPipeline
from bot.review import ReviewDesk
from bot.store import Store
from bot.store.community_settings import RedisCommunitySettings
from bot.store.connection import connect
from bot.store.redis_store import build_store
from bot.store.review import RedisReviewStore
from bot.store.usage import UsageLedger
from bot.store.window import WindowCache
from bot.thread_notices import ThreadNotices
from bot.usage import Prices
from bot.worker import Worker
from config.communities import Communities
from config.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything a run mode needs, built once."""

    settings: Settings
    #: One inbox entry into one committed turn (the pipeline's runner).
    engine: ConversationEngine
    #: Ingest, leases, fencing and the per-thread drains; the platforms register their delivery sinks here.
    pipeline: TurnPipeline
    #: What members do (send, edit to branch, end by command), for every surface.
    member_actions: MemberActions
    #: Cases numbered and filed (late ones too), the review desk told of each.
    case_filing: CaseFiling
    #: Notices queued for the bot process of a thread's platform (a dashboard reopen).
    notices: ThreadNotices
    #: The model API's back-off, shared by every worker.
    backoff: ModelBackoff
    cases: CaseLog
    store: Store
    #: The Redis client every part of the store shares (and the surfaces' own Redis users: budgets, accounts).
    redis: Any
    #: The history windows this process holds (``bot.store.window``).
    windows: WindowCache
    model: ModelClient
    communities: Communities
    #: True when no REDIS_URL was given and the in-process Redis holds the state.
    embedded_store: bool
    usage: UsageLedger
    #: Review state, appeals and members' end records.
    review: ReviewDesk
    #: The moderators' actions on cases (take, review, note, reopen, decide an appeal), for every surface.
    moderation: Moderation
    #: The communities' settings saved on the dashboard (versioned), applied live to ``communities``.
    community_settings: CommunitySettings
    #: Set by the run mode once it takes traffic (its HTTP listener is bound, its gateway or socket is
    #: connected); ``/readyz`` answers 200 only from then on.
    serving: bool = False
    _worker: Worker | None = field(default=None, repr=False)

    @property
    def worker(self) -> Worker:
        """The background duties every bot process runs (recovery, pending cases, notices)."""
        return self.worker_polling_notices(self.settings.worker.notice_interval)

    def worker_polling_notices(self, every: float) -> Worker:
        """The worker, built on first use, relaying queued notices as soon as it hears of them, and every
        ``every`` seconds while it cannot (a platform's own poll interval; the shorter of it and the worker's
        setting wins)."""
        if self._worker is None:
            section = self.settings.worker
            if every < section.notice_interval:
                section = section.model_copy(update={"notice_interval": every})
            self._worker = Worker(self.pipeline, self.backoff, self.case_filing, self.notices, section,
                                  settings_sync=self.community_settings.refresh, wakeups=self.store.wakeups)
        return self._worker

    async def aclose(self) -> None:
        if self._worker is not None:
            await self._worker.stop()
        await self.model.aclose()
        await self.store.health.aclose()


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


def prices(settings: Settings) -> Prices:
    ops = settings.ops
    return Prices(ops.price_input, ops.price_output, ops.price_cache_write, ops.price_cache_read)


def build_limiter(settings: Settings, clock: Clock | None = None) -> Limiter:
    path = settings.limit.clock_offset_file
    if clock is None:
        clock = OffsetFileClock(path) if path is not None else SystemClock()
    return Limiter(clock, prices(settings))


def build_runtime(settings: Settings, *, model: ModelClient | None = None, redis: Any | None = None,
                  communities: Communities | None = None, metrics: Metrics | None = None,
                  clock: Clock | None = None) -> Runtime:
    """Build the engine, the pipeline and their collaborators. ``redis``, ``model`` and the limits'
    ``clock`` may be injected (tests)."""
    url = settings.redis.url.get_secret_value() if settings.redis.url else None
    pool = settings.redis
    client = redis if redis is not None else connect(url, cluster=pool.cluster, max_connections=pool.max_connections,
                                                     pool_timeout=pool.pool_timeout)
    metrics = metrics or Metrics()
    windows = WindowCache(settings.store.window_cache_threads, settings.store.window_cache_bytes)
    store = build_store(client, settings.store, metrics=metrics, windows=windows, attachments=settings.attachments)
    communities = communities or settings.engine.communities()
    chosen = model or build_model(settings)
    ledger = UsageLedger(client, thread_ttl_ms=settings.store.ended_ttl_ms)
    review_store = RedisReviewStore(client, retention_s=settings.store.retention_s)
    cases = CaseLog(store.cases)
    review = ReviewDesk(review_store, cases, communities)
    limiter = build_limiter(settings, clock)
    backoff = ModelBackoff(store.backoff, settings.pipeline.busy_notice_seconds)
    case_filing = CaseFiling(store.cases, review, usage=ledger, pending_wait=settings.engine.pending_filing_seconds)
    engine = ConversationEngine(store, chosen, communities, settings.engine, backoff, case_filing, usage=ledger,
                                metrics=metrics, member_records=review, limiter=limiter)
    pipeline = TurnPipeline(store.inbox, store.turns, engine, settings.pipeline, metrics=metrics)
    member_actions = MemberActions(store, engine, pipeline, case_filing, communities, settings.engine,
                                   limiter=limiter, metrics=metrics, attachments=settings.attachments)
    notices = ThreadNotices(store.notices)
    moderation = Moderation(store.turns, cases, review_store, review, notices, communities)
    return Runtime(settings, engine, pipeline, member_actions, case_filing, notices, backoff, cases, store, client,
                   windows, chosen, communities, embedded_store=redis is None and url is None, usage=ledger,
                   review=review, moderation=moderation,
                   community_settings=CommunitySettings(RedisCommunitySettings(client), communities))
