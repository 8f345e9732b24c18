"""What each request leaves behind: one access log line and the Prometheus metrics (requests by route,
status and role; latency by route).

A route is named by its template (`/v1/members/{member_id}`), never by the path asked, so member ids never
become metric labels. The access log never holds a key: the Authorization header is not logged, and anything
shaped like a key elsewhere in the line (a key pasted into a query) is masked.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consumers.metrics import PREFIX

access_log = logging.getLogger("points_ledger.api.access")
#: Request durations (seconds) the histogram tells apart: a balance look-up takes milliseconds.
REQUEST_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: An API key anywhere in a logged line (ledger.storage.api_keys' shape).
KEY_SHAPE = re.compile(r"plk_[0-9A-Za-z_-]*")
#: The environment variable that puts prometheus_client in multiprocess mode (`serve --workers N`).
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"


class ApiMetrics:
    """The API's metrics, in a registry of their own (or, with several workers, in prometheus_client's
    multiprocess files, summed at scrape time)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            f"{PREFIX}_api_requests_total", "HTTP requests answered, by route, method, status and role.",
            ["route", "method", "status", "role"], registry=self.registry,
        )  # fmt: skip
        self.seconds = Histogram(
            f"{PREFIX}_api_request_duration_seconds", "Time to answer an HTTP request, by route and method.",
            ["route", "method"], buckets=REQUEST_SECONDS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        # Each label set's child, remembered: prometheus_client's `labels()` (a lock, a key built anew) was most
        # of the cost of observing. Route templates, methods, statuses and roles are few, so the children are too.
        self._counter = functools.cache(self.requests.labels)
        self._histogram = functools.cache(self.seconds.labels)

    def observe(self, route: str, method: str, status: int, role: str, seconds: float) -> None:
        self._counter(route, method, str(status), role).inc()
        self._histogram(route, method).observe(seconds)

    def exposition(self) -> bytes:
        """The Prometheus text of every worker's metrics."""
        from prometheus_client import generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        if os.environ.get(MULTIPROCESS_DIR):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def masked(text: str) -> str:
    return KEY_SHAPE.sub("plk_…", text)


class Observed:
    """ASGI middleware: time each HTTP request, then count it and log one line."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics | None) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server sends when the application fails before it answers

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route: Any = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED
        state = scope.get("state") or {}
        role, name = state.get("role", "-"), state.get("key_name", "-")
        if self.metrics is not None:
            self.metrics.observe(template, scope["method"], status, role, seconds)
        if access_log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            where = f"{client[0]}:{client[1]}" if client else "-"
            query = scope.get("query_string", b"").decode("latin-1")
            target = scope.get("path", "") + (f"?{query}" if query else "")
            access_log.info(
                '%s "%s %s" %d %.1fms key=%s role=%s',
                where, scope["method"], masked(target), status, seconds * 1000, masked(name), role,
            )  # fmt: skip
