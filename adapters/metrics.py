"""``bot.metrics.Metrics`` on prometheus_client, one registry per process (or per test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.metrics import Metrics

_LATENCY = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class PrometheusMetrics(Metrics):
    """Every hook as a Prometheus series; ``exposition()`` is the text ``/metrics`` serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._turns = Counter("threadguard_turns", "Member messages handled, by platform and outcome",
                              ["platform", "outcome"], registry=r)
        self._turn_seconds = Histogram("threadguard_turn_seconds", "Time to handle a member message",
                                       ["platform"], buckets=_LATENCY, registry=r)
        self._model_seconds = Histogram("threadguard_model_call_seconds", "Messages API call duration",
                                        buckets=_LATENCY, registry=r)
        self._first_token = Histogram("threadguard_model_first_token_seconds",
                                      "Time from a Messages API request to the first content of its answer",
                                      buckets=_LATENCY, registry=r)
        self._ladder = Counter("threadguard_ladder_events", "Committed ladder steps, by kind and category",
                               ["kind", "category"], registry=r)
        self._tokens = Counter("threadguard_tokens", "Model tokens billed, by kind", ["kind"], registry=r)
        self._store_errors = Counter("threadguard_redis_errors", "Failed Redis requests, by operation",
                                     ["operation"], registry=r)
        self._platform_errors = Counter("threadguard_platform_errors",
                                        "Platform API calls that failed after retries", ["platform", "code"],
                                        registry=r)
        self._rate_limited = Counter("threadguard_platform_rate_limited",
                                     "Platform answers with HTTP 429, by method", ["platform", "method"], registry=r)
        self._inbox = Gauge("threadguard_inbox_depth", "Messages waiting in the inbox last looked at", registry=r)
        self._takeovers = Counter("threadguard_lease_takeovers", "Threads taken over after a lease ran out",
                                  registry=r)
        self.degraded = Gauge("threadguard_degraded", "1 while running on an explicitly allowed stand-in",
                              ["reason"], registry=r)
        self.ready = Gauge("threadguard_ready", "1 when the last readiness check passed", registry=r)
        for kind in ("input", "output", "cache_write", "cache_read"):
            self._tokens.labels(kind)  # present (at 0) from the start, so rates work from the first scrape

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def turn(self, platform: str, outcome: str, seconds: float) -> None:
        self._turns.labels(platform, outcome).inc()
        self._turn_seconds.labels(platform).observe(seconds)

    def model_call(self, seconds: float, first_token_seconds: float | None) -> None:
        self._model_seconds.observe(seconds)
        if first_token_seconds is not None:
            self._first_token.observe(first_token_seconds)

    def ladder_event(self, kind: str, category: str) -> None:
        self._ladder.labels(kind, category).inc()

    def tokens(self, kind: str, count: int) -> None:
        if count:
            self._tokens.labels(kind).inc(count)

    def store_error(self, operation: str) -> None:
        self._store_errors.labels(operation).inc()

    def platform_error(self, platform: str, code: str) -> None:
        self._platform_errors.labels(platform, code).inc()

    def rate_limited(self, platform: str, method: str) -> None:
        self._rate_limited.labels(platform, method).inc()

    def inbox_depth(self, depth: int) -> None:
        self._inbox.set(depth)

    def lease_takeover(self) -> None:
        self._takeovers.inc()
