"""Prometheus instruments, one registry per app (no process-global collectors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


@dataclass
class Metrics:
    """The service's counters and histograms, registered on their own registry."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.http_requests = Counter(
            "bot_http_requests", "HTTP requests answered", ["route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "bot_http_request_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.webhook_messages = Counter(
            "bot_webhook_messages",
            "Inbound WeChat messages by type and outcome",
            ["type", "outcome"],
            registry=r,
        )
        self.dedupe_hits = Counter(
            "bot_webhook_dedupe_hits",
            "Retried deliveries answered from the first attempt",
            registry=r,
        )
        self.wechat_calls = Counter(
            "bot_wechat_api_calls",
            "Outbound WeChat API calls by API and errcode",
            ["api", "errcode"],
            registry=r,
        )
        self.token_fetches = Counter(
            "bot_wechat_token_fetches", "access_token fetches sent to WeChat", registry=r
        )

        # Label children by their labels: prometheus_client's labels() validates and locks on
        # every call, a dict lookup does not.
        self._requests: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._messages: dict[tuple[str, str], Any] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count an answered HTTP request and its latency."""
        children = self._requests.get((route, status))
        if children is None:
            children = self._requests[route, status] = (
                self.http_requests.labels(route, str(status)),
                self.http_latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def count_message(self, kind: str, outcome: str) -> None:
        """Count an inbound WeChat message by type and outcome."""
        child = self._messages.get((kind, outcome))
        if child is None:
            child = self._messages[kind, outcome] = self.webhook_messages.labels(kind, outcome)
        child.inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
