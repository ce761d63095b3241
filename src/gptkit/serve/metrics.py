"""Prometheus metrics of one app (its own CollectorRegistry), and the ASGI middleware that counts requests."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptkit.engine import Event

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)


class ServerMetrics:
    """Counters, gauges and histograms of one server."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self, num_waiting: Callable[[], float], num_running: Callable[[], float], prefix_cache: Any = None
    ) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("gptkit_http_requests", "HTTP requests by route and status", ["route", "status"], registry=r)  # fmt: skip
        self.http_latency = Histogram("gptkit_http_request_duration_seconds", "HTTP request duration by route", ["route"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.prompt_tokens = Counter("gptkit_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generation_tokens = Counter("gptkit_generation_tokens", "Tokens generated", registry=r)
        self.finished = Counter("gptkit_requests_finished", "Engine requests finished, by reason", ["reason"], registry=r)  # fmt: skip
        self.waiting = Gauge("gptkit_requests_waiting", "Requests waiting for an engine slot", registry=r)
        self.running = Gauge("gptkit_requests_running", "Requests holding an engine slot", registry=r)
        self.waiting.set_function(num_waiting)
        self.running.set_function(num_running)
        self.e2e = Histogram("gptkit_e2e_request_latency_seconds", "Generation latency, end to end", buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.ttft = Histogram("gptkit_time_to_first_token_seconds", "Time from request to first token", buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        if prefix_cache is not None:
            r.register(PrefixCacheCollector(prefix_cache))

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

    def tracker(self) -> GenerationTracker:
        return GenerationTracker(self)


class PrefixCacheCollector(Collector):
    """The engine's prefix cache counters (``PrefixCache.stats()``), read at each scrape."""

    COUNTERS = (
        ("lookups", "Engine requests that looked for a cached prompt prefix"),
        ("hits", "Engine requests that reused at least one cached block"),
        ("prompt_tokens", "Prompt tokens of the requests that looked"),
        ("cached_tokens", "Prompt tokens taken from the prefix cache instead of prefilled"),
        ("stored_tokens", "Tokens copied into the prefix cache"),
        ("evicted_tokens", "Tokens evicted from the prefix cache (least recently used first)"),
    )

    def __init__(self, prefix_cache: Any) -> None:
        self.prefix_cache = prefix_cache

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.prefix_cache.stats()
        for name, documentation in self.COUNTERS:
            yield CounterMetricFamily(
                f"gptkit_prefix_cache_{name}", documentation, value=getattr(stats, name)
            )
        gauges = (
            ("hit_rate", "Fraction of looked-up prompt tokens taken from the cache", stats.token_hit_rate),
            ("memory_bytes", "Bytes of the cached blocks", stats.memory_bytes),
            ("capacity_bytes", "Bytes of the whole prefix cache pool (its budget)", stats.capacity_bytes),
        )
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(f"gptkit_prefix_cache_{name}", documentation, value=value)


class GenerationTracker:
    """Time to first token, end-to-end latency and token counts of one API call's engine requests."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics
        self.start = time.perf_counter()
        self.first_token_seen = False

    def event(self, event: Event) -> None:
        """Note one engine event."""
        if not self.first_token_seen and event.token_id is not None:
            self.first_token_seen = True
            self.metrics.ttft.observe(time.perf_counter() - self.start)
        if event.completion is not None:
            self.metrics.prompt_tokens.inc(event.completion.prompt_tokens)
            self.metrics.generation_tokens.inc(event.completion.completion_tokens)
            self.metrics.finished.labels(event.completion.finish_reason).inc()

    def done(self) -> None:
        """The call finished: observe its end-to-end latency."""
        self.metrics.e2e.observe(time.perf_counter() - self.start)


class MetricsMiddleware:
    """Count every HTTP request by route template and status, and time it (pure ASGI: streams pass through)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, paths: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = paths  # the app's route paths: requests answered before routing still get their route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = self._route(scope)
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.http_latency.labels(route).observe(time.perf_counter() - start)

    def _route(self, scope: Scope) -> str:
        """The route's path template; unknown paths share one label (bounded cardinality)."""
        path = getattr(scope.get("route"), "path", None)
        if path is None and scope.get("path") in self.paths:
            path = scope["path"]
        return path or "unmatched"
