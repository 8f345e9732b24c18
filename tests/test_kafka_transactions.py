"""Topics written by transactional producers: read committed, and positions across the transaction markers.

A real cluster leaves an aborted transaction's records out of what a `read_committed` consumer receives
(kafka-python drops them using the fetch response's list of aborted transactions). The local broker (Tansu
0.6) cannot show that: it hands aborted records to every consumer. What it does show, and what is tested
here, is the setting reaching the client, and the offsets a transaction's commit marker takes: each
transaction leaves a gap that the recorded positions, the next poll and the lag must step over.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

from confluent_kafka import Producer

from consumers.kafka_batch import upstream_name
from consumers.kafka_consumer import ConsumeOptions
from consumers.kafka_run import consume
from consumers.kafka_settings import KafkaSettings
from consumers.metrics import ConsumerMetrics
from ledger.application import LedgerApplication
from ledger.program import Program
from ledger.storage.store import parse_store_url
from tests.cli_helpers import cli
from tests.kafka_helpers import create_topic, unique
from tests.messages import encode, wire

MESSAGES_PER_TRANSACTION = 3


class LagSeen(ConsumerMetrics):
    """The lag the consumer reported, every time it did."""

    def __init__(self) -> None:
        super().__init__()
        self.lags: list[int] = []

    def lag_of(self, topic: str, partition: int, lag: int) -> None:
        self.lags.append(lag)
        super().lag_of(topic, partition, lag)


def test_consumers_read_committed_unless_told_otherwise() -> None:
    assert KafkaSettings().consumer_config("g", 10)["isolation_level"] == "read_committed"
    uncommitted = KafkaSettings(isolation_level="read_uncommitted")
    assert uncommitted.consumer_config("g", 10)["isolation_level"] == "read_uncommitted"


def test_the_isolation_level_is_a_setting_config_show_names(tmp_path: object) -> None:
    def row(*args: str, env: dict[str, str] | None = None) -> dict[str, str]:
        shown = cli("config", "show", "--format", "json", *args, env=env)
        assert shown.returncode == 0, shown.stderr
        return next(r for r in map(json.loads, shown.stdout.splitlines()) if r["setting"] == "kafka.isolation_level")

    assert (row()["value"], row()["source"]) == ("read_committed", "default")
    from_env = row(env={"KAFKA_ISOLATION_LEVEL": "read_uncommitted"})
    assert (from_env["value"], from_env["source"]) == ("read_uncommitted", "env KAFKA_ISOLATION_LEVEL")
    refused = cli("config", "show", env={"KAFKA_ISOLATION_LEVEL": "dirty"})
    assert refused.returncode == 2 and "isolation_level" in refused.stderr


def _purchases(start: int, count: int) -> Iterator[bytes]:
    for n in range(start, start + count):
        yield encode(wire("purchase", f"M{n % 5}", "2024-01-01", event_id=f"tx-{n}", transaction_id=f"T{n}",
                          amount="10.00", currency="USD"))  # fmt: skip


def _produce_in_transactions(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    """Every MESSAGES_PER_TRANSACTION lines one committed transaction, all to partition 0."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("txn"), "linger.ms": 0})
    producer.init_transactions(30)
    for start in range(0, len(lines), MESSAGES_PER_TRANSACTION):
        producer.begin_transaction()
        for line in lines[start : start + MESSAGES_PER_TRANSACTION]:
            producer.produce(topic, value=line, partition=0)
        producer.commit_transaction(30)
    producer.flush(30)


def _consume(
    app: LedgerApplication, bootstrap: str, topic: str, group: str, metrics: ConsumerMetrics
) -> dict[str, int]:
    stop = threading.Event()
    settings = KafkaSettings(bootstrap, session_timeout_ms=3_000, heartbeat_interval_ms=1_000)
    options = ConsumeOptions((topic,), group, 4, until_caught_up=True)
    return consume(app, settings, options, {topic: f"{topic}.dlq"}, stop, metrics=metrics,
                   warn=lambda _: None).as_dict()  # fmt: skip


def test_positions_step_over_the_transaction_markers_without_skipping_or_repeating(
    kafka_bootstrap: str, sqlite_url: str
) -> None:
    topic, group = unique("txn"), unique("g")
    create_topic(kafka_bootstrap, topic, 1)
    create_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    first = list(_purchases(0, 12))
    _produce_in_transactions(kafka_bootstrap, topic, first)  # offsets 0-2, marker 3, 4-6, marker 7, ...
    app = LedgerApplication(parse_store_url(sqlite_url), Program())
    try:
        metrics = LagSeen()
        tally = _consume(app, kafka_bootstrap, topic, group, metrics)
        assert (tally["recorded"], tally["duplicates"]) == (12, 0)
        # The last data record is at 14: four transactions of three, each followed by its marker.
        assert app.position(upstream_name(topic, 0)) == 14
        assert metrics.lags and metrics.lags[-1] == 0  # the marker at 15 is no message to wait for

        _produce_in_transactions(kafka_bootstrap, topic, list(_purchases(12, 6)))
        again = _consume(app, kafka_bootstrap, topic, group, ConsumerMetrics())
        assert (again["recorded"], again["duplicates"]) == (6, 0)  # after the marker, nothing skipped or repeated
        assert app.position(upstream_name(topic, 0)) == 22
        balances = {f"M{n}": app.member(f"M{n}").balance for n in range(5)}  # type: ignore[union-attr]
        assert sum(balances.values()) == 18 * 10
    finally:
        app.close()
