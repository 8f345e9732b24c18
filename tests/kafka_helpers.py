"""Topics, producing, reading back and comparing ledgers for the Kafka tests."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumers.catch_up import partition_ends
from consumers.kafka_batch import recorded_through, upstream_name
from consumers.kafka_clients import ensure_topics, new_producer
from consumers.kafka_consumer import ConsumeOptions
from consumers.kafka_producer import ProduceResult, member_key, produce_lines
from consumers.kafka_run import consume
from consumers.kafka_settings import KafkaSettings
from consumers.retry import RetryPolicy
from ledger.application import LedgerApplication
from ledger.outcomes import Tally
from ledger.program import Program
from ledger.storage.store import parse_store_url
from projections.log import read_log
from tests.cli_helpers import cli_command, cli_env

#: Group timeouts for tests: Tansu holds each join about half the session timeout.
SESSION_TIMEOUT_MS = "3000"


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    ensure_topics(KafkaSettings(bootstrap), {topic: partitions})


def produce(bootstrap: str, topic: str, lines: Iterable[bytes]) -> ProduceResult:
    producer = new_producer(KafkaSettings(bootstrap))
    try:
        return produce_lines(producer, topic, lines)
    finally:
        producer.close()


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every record of a topic, read without a group up to its end now (no idle wait)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    ends = partition_ends(consumer, partitions) if partitions else {}
    records: list[Any] = []
    if ends:
        consumer.seek_to_beginning(*ends)
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(partition) < end for partition, end in ends.items()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s reading {topic} up to {ends}")
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    consumer.close()
    return sorted(records, key=lambda record: (record.partition, record.offset))


def consume_args(bootstrap: str, topic: str, group: str, *extra: str) -> list[str]:
    return [
        "consume", "--bootstrap-servers", bootstrap, "--topic", topic, "--group", group,
        "--session-timeout-ms", SESSION_TIMEOUT_MS, "--format", "json", *extra,
    ]  # fmt: skip


def start_consume(
    store: str, bootstrap: str, topic: str, group: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_command(*consume_args(bootstrap, topic, group, *extra), store=store),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(env),
    )  # fmt: skip


def open_ledger(store: str) -> LedgerApplication:
    return LedgerApplication(parse_store_url(store), Program())


def positions(store: str, topic: str, partitions: int) -> dict[int, int | None]:
    app = open_ledger(store)
    try:
        return {p: app.position(upstream_name(topic, p)) for p in range(partitions)}
    finally:
        app.close()


def recorded_count(store: str, topic: str, partitions: int) -> int:
    """Messages whose position is recorded (offsets are dense in a fresh topic)."""
    return sum(p + 1 for p in positions(store, topic, partitions).values() if p is not None)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def ledger_contents(store: str) -> tuple[int, dict[str, list[tuple[Any, ...]]], dict[str, tuple[int, str]]]:
    """(events in the log, each member's events without timestamps, each member's balance and tier)."""
    app = open_ledger(store)
    try:
        total = sum(1 for _ in read_log(app))
        members = sorted(app.member_ids())
        events = {
            member_id: [
                (type(e).__name__, e.originator_version, e.balance_delta, repr(getattr(e, "provenance", None)))
                for e in app.member_events(member_id)
            ]
            for member_id in members
        }
        balances = {}
        for member_id in members:
            member = app.member(member_id)
            if member is None:
                raise AssertionError(f"member {member_id} listed but not loadable")
            balances[member_id] = (member.balance, member.tier)
        return total, events, balances
    finally:
        app.close()


def produce_at(bootstrap: str, topic: str, lines: Sequence[bytes], timestamp: datetime) -> dict[int, int]:
    """Send lines keyed by member id with one record timestamp; partition -> last offset."""
    producer = KafkaProducer(**{**KafkaSettings(bootstrap).producer_config(), "max_request_size": 8 * 1024 * 1024})
    try:
        stamp_ms = int(timestamp.timestamp() * 1000)
        futures = [producer.send(topic, key=member_key(line), value=line, timestamp_ms=stamp_ms) for line in lines]
        producer.flush(timeout=60)
        last: dict[int, int] = {}
        for future in futures:
            metadata = future.get(timeout=30)
            last[metadata.partition] = max(last.get(metadata.partition, -1), metadata.offset)
        return last
    finally:
        producer.close()


def consume_all(
    app: LedgerApplication, bootstrap: str, topic: str, last: dict[int, int], *, batch_size: int = 500,
    store_retry: RetryPolicy | None = None,
) -> dict[str, int]:  # fmt: skip
    """Consume `topic` into `app` in this process until every partition is recorded through `last`."""
    stop = threading.Event()
    settings_ = KafkaSettings(bootstrap, session_timeout_ms=3_000, heartbeat_interval_ms=1_000)
    options = ConsumeOptions(
        (topic,), unique("g"), batch_size, until_idle_s=10, store_retry=store_retry or RetryPolicy()
    )

    def progress(_: Tally) -> None:
        if recorded_through(app, topic, last):
            stop.set()

    tally = consume(app, settings_, options, {topic: f"{topic}.dlq"}, stop, warn=lambda text: None,
                    on_progress=progress)  # fmt: skip
    assert recorded_through(app, topic, last)
    return tally.as_dict()
