"""Prometheus metrics of the Kafka consumer: one prefix, base units, no member ids in labels."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ledger.outcomes import Tally

PREFIX = "points_ledger"
#: Batch durations (seconds) the histogram tells apart.
BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ConsumerMetrics:
    """Counters, a histogram and gauges in a registry of their own (served only when asked)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            f"{PREFIX}_messages_consumed_total",
            "Kafka messages handled, by outcome (recorded, duplicate, rejected, invalid, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_duration_seconds",
            "Time to parse, dead-letter and record one partition batch.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.lag = Gauge(
            f"{PREFIX}_consumer_lag_messages",
            "Fetch high-water mark minus the next offset to record, per partition.",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.position = Gauge(
            f"{PREFIX}_recorded_offset",
            "Last Kafka offset recorded in the ledger, per partition.",
            ["topic", "partition"],
            registry=self.registry,
        )
        for outcome in ("recorded", "duplicate", "rejected", "invalid", "failed"):
            self.messages.labels(outcome)

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        """Serve /metrics over HTTP from a daemon thread."""
        start_http_server(port, addr=address, registry=self.registry)

    def batch(self, tally: Tally, seconds: float, topic: str, partition: int, offset: int) -> None:
        self.messages.labels("recorded").inc(tally.recorded)
        self.messages.labels("duplicate").inc(tally.duplicates)
        self.messages.labels("rejected").inc(tally.rejected)
        self.messages.labels("invalid").inc(tally.invalid)
        self.messages.labels("failed").inc(tally.failed)
        self.batch_seconds.observe(seconds)
        self.position.labels(topic, str(partition)).set(offset)

    def lag_of(self, topic: str, partition: int, lag: int) -> None:
        self.lag.labels(topic, str(partition)).set(lag)

    def forget(self, topic: str, partition: int) -> None:
        """A partition went to another consumer: its gauges are no longer ours to report."""
        for gauge in (self.lag, self.position):
            with contextlib.suppress(KeyError):
                gauge.remove(topic, str(partition))


class PublisherMetrics:
    """`publish`: records published by event type, the position reached, the lag behind the log."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.published = Counter(
            f"{PREFIX}_balance_events_published_total",
            "Balance events acknowledged by the broker, by type.",
            ["type"],
            registry=self.registry,
        )
        self.position = Gauge(f"{PREFIX}_publisher_position", "Last log position published.", registry=self.registry)
        self.lag = Gauge(
            f"{PREFIX}_publisher_lag_events", "Log head minus the last position published.", registry=self.registry
        )
        self.published_so_far: dict[str, int] = {}

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        start_http_server(port, addr=address, registry=self.registry)

    def page(self, published: dict[str, int], position: int, head: int) -> None:
        """After a page was acknowledged: running totals by type, the position and the lag."""
        for name, total in published.items():
            self.published.labels(name).inc(total - self.published_so_far.get(name, 0))
            self.published_so_far[name] = total
        self.position.set(position)
        self.lag.set(max(head - position, 0))
