"""Settings from environment variables (and a ``.env`` file), one section per concern.

Secrets are ``SecretStr``: they never appear in ``repr`` or logs. Nothing here reads the environment
at import time; ``Settings()`` does, when the composition root builds the app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.communities import Communities


def _section(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore")


class AnthropicSettings(BaseSettings):
    """``ANTHROPIC_*``: the Claude API. Without an API key the offline demo model is used."""

    model_config = _section("ANTHROPIC_")

    api_key: SecretStr | None = None
    base_url: str | None = None
    model: str = "claude-sonnet-5-5"
    max_tokens: int = Field(default=1024, ge=16)
    timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    #: Prompt cache lifetime: ``5m`` (the default, cheapest writes) or ``1h`` (writes cost 2x instead of
    #: 1.25x, but survive a quiet hour; for communities whose threads pause for longer than 5 minutes).
    cache_ttl: Literal["5m", "1h"] = "5m"


class RedisSettings(BaseSettings):
    """``REDIS_*``: where conversation state lives. Without a URL an in-process store is used."""

    model_config = _section("REDIS_")

    url: SecretStr | None = None
    cluster: bool = False
    #: Connections this process opens to Redis (on Cluster: requests in flight at once, which open at most
    #: as many to each node). Past them a request waits for a free one (``pool_timeout``) instead of failing.
    max_connections: int = Field(default=100, ge=4)
    #: Seconds a request waits for a free connection before it fails as an unreachable store.
    pool_timeout: float = Field(default=5.0, gt=0)


class EngineSettings(BaseSettings):
    """``THREADGUARD_*``: how the conversation engine answers one turn."""

    model_config = _section("THREADGUARD_")

    communities_file: Path | None = None
    max_message_chars: int = Field(default=4000, ge=1)
    history_token_budget: int = Field(default=24000, ge=500)
    max_tool_rounds: int = Field(default=4, ge=1)
    #: How long the end command waits for a running turn in the same thread.
    lock_wait_seconds: float = Field(default=120.0, gt=0)
    #: Seconds a finished turn's commit is retried while Redis is unreachable (its answer is already written).
    commit_retry_seconds: float = Field(default=20.0, ge=0)
    #: Seconds a model call may go without its first words before the member is shown the bot is working.
    working_notice_seconds: float = Field(default=4.0, gt=0)
    #: Seconds one model call may take in all (the client's retries included) before the member is told.
    model_deadline_seconds: float = Field(default=90.0, gt=0)
    #: Seconds accepting a message is retried while Redis is unreachable (within Slack's 3 s ack).
    accept_retry_seconds: float = Field(default=1.5, ge=0)
    #: Seconds a message to a frozen thread waits on numbering a case a failure left pending.
    pending_filing_seconds: float = Field(default=1.0, gt=0)
    log_level: str = "INFO"

    def communities(self) -> Communities:
        return Communities.from_file(self.communities_file)


class PipelineSettings(BaseSettings):
    """``THREADGUARD_*``: the turn pipeline's bounds (inbox, thread length, threads at once)."""

    model_config = _section("THREADGUARD_")

    #: Messages waiting in one thread; beyond it the member is asked to slow down.
    max_inbox: int = Field(default=30, ge=1)
    #: Turns in one thread; beyond it the member is asked to start a new conversation.
    max_thread_turns: int = Field(default=2000, ge=1)
    #: Threads one process works on at once; more wait in Redis for any worker.
    max_active_threads: int = Field(default=64, ge=1)
    #: While the model API asks for a back-off longer than this (seconds), a member whose message waits
    #: is told once that it is queued.
    busy_notice_seconds: float = Field(default=5.0, ge=0)


class WorkerSettings(BaseSettings):
    """``THREADGUARD_*``: the background duties every bot process runs (``bot.worker``)."""

    model_config = _section("THREADGUARD_")

    # The loops sleep until a wake-up (``bot.worker``): these intervals pace them while they have work, and
    # are how often they look while the wake-ups cannot be heard (Redis unreachable).
    #: Seconds between two looks for due threads (threads whose owner died, inboxes left waiting), at least.
    recovery_interval: float = Field(default=1.0, gt=0)
    #: Seconds between two looks for cases left pending while some are.
    maintenance_interval: float = Field(default=5.0, gt=0)
    #: Seconds between two looks at the notices other processes queued (a dashboard reopen) while the
    #: wake-ups cannot be heard; a platform's own poll interval, when shorter, wins (``bot.bootstrap``).
    notice_interval: float = Field(default=2.0, gt=0)
    #: On SIGTERM: seconds to let running turns finish before their leases are handed back.
    shutdown_grace: float = Field(default=20.0, ge=0)
    #: Seconds between two looks at the communities' settings revision (one GET) while the wake-ups cannot
    #: be heard: a setting saved on the dashboard reaches every worker at once, and within this time then.
    settings_interval: float = Field(default=2.0, gt=0, le=5)
    #: Seconds between two looks of every loop even when nothing woke it (a safety net: a wake-up lost
    #: outside a dropped connection, or a process of an older version that sends none).
    sweep_interval: float = Field(default=300.0, gt=0)
    #: Due threads looked at per shard and pass of the recovery loop.
    recovery_batch: int = Field(default=50, ge=1)


class AttachmentSettings(BaseSettings):
    """``THREADGUARD_ATTACHMENT_*``: members' files, within the Messages API's documented limits.

    The API refuses an image whose base64 text is over 5 MB (5,242,880 bytes) or with a side over 8000 px,
    a request over 32 MB, more than 100 images in one request, and PDFs of more than 100 pages; it scales
    down any image whose long edge is over 1568 px itself (latency, no quality), so we do it first.
    """

    model_config = _section("THREADGUARD_ATTACHMENT_")

    #: A download larger than this is refused while it streams (the platform's own claim is checked first).
    max_download_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    download_timeout_seconds: float = Field(default=20.0, gt=0)
    #: Images sent with one message; the rest are named to the member.
    max_images_per_message: int = Field(default=5, ge=0, le=100)
    #: PDFs and text files sent with one message.
    max_documents_per_message: int = Field(default=5, ge=0, le=100)
    #: Long edge images are scaled down to before sending (the API's recommended size).
    image_long_edge: int = Field(default=1568, ge=200, le=8000)
    #: Decoded pixels an image may have (width x height, read from the header before decoding):
    #: anything larger is refused as a possible decompression bomb.
    max_image_pixels: int = Field(default=64_000_000, ge=1_000_000)
    #: The API's limits on one image: the base64 text and each side.
    max_image_base64: int = Field(default=5_242_880, ge=1024, le=5_242_880)
    max_image_side: int = Field(default=8000, ge=200, le=8000)
    #: PDFs: pages (the API allows 100 in a request) and bytes.
    max_pdf_pages: int = Field(default=100, ge=1, le=100)
    max_pdf_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: Characters read from a text file; the rest is cut and the member told.
    max_text_chars: int = Field(default=50_000, ge=100)
    #: Per thread in Redis: files kept for later turns and their total size (base64 and text characters);
    #: beyond either the oldest become a placeholder. Below the API's 32 MB request limit and 100 images.
    thread_max_files: int = Field(default=20, ge=1, le=100)
    thread_max_bytes: int = Field(default=24 * 1024 * 1024, ge=1024, le=30 * 1024 * 1024)


DAY_S = 86_400
DAY_MS = DAY_S * 1000


class StoreSettings(BaseSettings):
    """``THREADGUARD_*``: leases and lifetimes in Redis, and what a process keeps of it."""

    model_config = _section("THREADGUARD_")

    #: The lease a thread's owner holds and renews while it works: when its process dies, another
    #: worker takes the thread over this many seconds later.
    lock_ttl_seconds: float = Field(default=6.0, gt=0)
    #: Threads whose history window a process keeps, so their next turn reads only what was added since
    #: (0: none kept; every turn reads its whole window).
    window_cache_threads: int = Field(default=100_000, ge=0)
    #: The memory those windows may take in all, in bytes (estimated from their entries; the threads used
    #: least recently are let go first). 64 MiB holds about 3,000 windows of 20 KB.
    window_cache_bytes: int = Field(default=64 * 2**20, ge=0)
    #: Idle conversations expire after this many days (ended threads keep their case).
    idle_ttl_days: float = Field(default=30.0, gt=0)
    #: Platform events are remembered this long for deduplication.
    dedupe_ttl_seconds: int = Field(default=86400, ge=60)
    #: Case transcripts are kept this many days; the case itself (numbers, reason) stays.
    case_retention_days: float = Field(default=365.0, gt=0)

    @property
    def lease_ms(self) -> int:
        return int(self.lock_ttl_seconds * 1000)

    @property
    def idle_ttl_ms(self) -> int:
        return int(self.idle_ttl_days * DAY_MS)

    @property
    def ended_ttl_ms(self) -> int:
        """An ended thread's keys (and its usage sums) live as long as its case's transcript."""
        return int(self.case_retention_days * DAY_MS)

    @property
    def retention_s(self) -> int:
        return int(self.case_retention_days * DAY_S)


class OpsSettings(BaseSettings):
    """``THREADGUARD_*``: operations: the metrics and health endpoint, model prices for cost estimates."""

    model_config = _section("THREADGUARD_")

    #: ``/metrics``, ``/healthz`` and ``/readyz`` of the long-running processes; 0 turns them off.
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    #: Model prices in US dollars per million tokens, for the cost estimates of ``threadguard usage`` and
    #: the dashboard (defaults: Claude Sonnet list prices; cache writes 1.25x, cache reads 0.1x of input).
    price_input: float = Field(default=3.0, ge=0)
    price_output: float = Field(default=15.0, ge=0)
    price_cache_write: float = Field(default=3.75, ge=0)
    price_cache_read: float = Field(default=0.30, ge=0)
    #: Days of per-community usage the dashboard shows.
    usage_days: int = Field(default=30, ge=1, le=400)


class LimitSettings(BaseSettings):
    """``THREADGUARD_*``: how the limits of ``[community.<id>.limits]`` count time (the limits themselves
    are per community)."""

    model_config = _section("THREADGUARD_")

    #: A file holding seconds to add to the clock the limits count in (tests move it to the next UTC day
    #: without waiting); unset: the system clock.
    clock_offset_file: Path | None = None


class Settings:
    """All sections together; each reads its own prefix."""

    def __init__(self, *, anthropic: AnthropicSettings | None = None, redis: RedisSettings | None = None,
                 engine: EngineSettings | None = None, pipeline: PipelineSettings | None = None,
                 worker: WorkerSettings | None = None, store: StoreSettings | None = None,
                 ops: OpsSettings | None = None, limit: LimitSettings | None = None,
                 attachments: AttachmentSettings | None = None) -> None:
        self.anthropic = anthropic or AnthropicSettings()
        self.redis = redis or RedisSettings()
        self.engine = engine or EngineSettings()
        self.pipeline = pipeline or PipelineSettings()
        self.worker = worker or WorkerSettings()
        self.store = store or StoreSettings()
        self.ops = ops or OpsSettings()
        self.limit = limit or LimitSettings()
        self.attachments = attachments or AttachmentSettings()
