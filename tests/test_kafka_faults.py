"""Crashes, rebalances, a broker that loses everything and a database that goes away."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from consumers.kafka_producer import member_key
from consumers.kafka_settings import KafkaSettings
from devkit.broker import LocalBroker
from devkit.streamgen import generate
from points_ledger.lifecycle import CRASH_AFTER_BATCH_ENV, CRASH_BEFORE_COMMIT_ENV
from tests.cli_helpers import cli
from tests.kafka_helpers import (
    consume_args,
    create_topic,
    ledger_contents,
    positions,
    produce,
    read_topic,
    recorded_count,
    start_consume,
    unique,
    wait_for,
)
from tests.pg_server import PgServer, pg_server

PARTITIONS = 4


def recorded(store: str, topic: str) -> int:
    return recorded_count(store, topic, PARTITIONS)


def consume_to_end(store: str, bootstrap: str, topic: str, group: str, *extra: str) -> dict[str, int]:
    result = cli(*consume_args(bootstrap, topic, group, "--until-caught-up", *extra), store=store)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def stream_of(messages: int, bootstrap: str, prefix: str, seed: int) -> tuple[str, str]:
    """A new topic holding a stream of `messages`, and a new group name: (topic, group)."""
    topic = unique(prefix)
    create_topic(bootstrap, topic, PARTITIONS)
    produce(bootstrap, topic, generate(messages, 400, 500, seed=seed))
    return topic, unique("g")


#: Where the kills land, in order: (crash point, batch of the run). A kill before the commit finds the batch's
#: dead letters sent and nothing of it recorded; one after the commit, the batch recorded and Kafka's offset not.
BOUNDARY_KILLS = [
    (CRASH_BEFORE_COMMIT_ENV, 1), (CRASH_AFTER_BATCH_ENV, 1), (CRASH_BEFORE_COMMIT_ENV, 2),
    (CRASH_AFTER_BATCH_ENV, 3), (CRASH_BEFORE_COMMIT_ENV, 4), (CRASH_AFTER_BATCH_ENV, 5),
    (CRASH_BEFORE_COMMIT_ENV, 1), (CRASH_AFTER_BATCH_ENV, 2),
]  # fmt: skip


def dead_letter_sources(bootstrap: str, topic: str) -> list[tuple[int, int]]:
    """(source partition, source offset) of every dead letter on `topic`."""
    return [
        (int(headers["source_partition"]), int(headers["source_offset"]))
        for headers in (dict(letter.headers) for letter in read_topic(bootstrap, topic))
    ]


def test_kill_9_at_each_exactly_once_boundary_neither_loses_nor_doubles(
    kafka_bootstrap: str, postgres_url: str, second_postgres_url: str
) -> None:
    topic, group = stream_of(8_000, kafka_bootstrap, "crash", seed=77)
    progress = [recorded(postgres_url, topic)]
    for crash_point, batch in BOUNDARY_KILLS:
        process = start_consume(postgres_url, kafka_bootstrap, topic, group, "--batch-size", "50",
                                env={crash_point: str(batch)})  # fmt: skip
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == -signal.SIGKILL, stderr
        progress.append(recorded(postgres_url, topic))
        grew = progress[-1] - progress[-2]
        # Batches hold 1 to 50 messages: the kill in batch N finds N - 1 of them (before) or N (after) recorded.
        done = batch - 1 if crash_point == CRASH_BEFORE_COMMIT_ENV else batch
        assert done <= grew <= 50 * done, (crash_point, batch, progress)
    assert progress[-1] < 8_000, progress  # every kill landed before the end of the stream

    consume_to_end(postgres_url, kafka_bootstrap, topic, group)
    clean_letters = f"{topic}.clean-dlq"
    consume_to_end(second_postgres_url, kafka_bootstrap, topic, unique("g"), "--dead-letter-topic", clean_letters)
    assert recorded(postgres_url, topic) == 8_000
    crashed, clean = ledger_contents(postgres_url), ledger_contents(second_postgres_url)
    assert crashed[0] == clean[0] > 8_000  # as many events: nothing doubled, nothing lost
    assert crashed[1] == clean[1]  # the same events, member by member, with the same provenance
    assert crashed[2] == clean[2]
    # Dead letters are at least once: a batch killed before its commit sends its own again. Their sources
    # tell the copies apart, and no invalid message is missing.
    letters, clean_sources = (
        dead_letter_sources(kafka_bootstrap, f"{topic}.dlq"),
        dead_letter_sources(kafka_bootstrap, clean_letters),
    )
    assert clean_sources and len(set(clean_sources)) == len(clean_sources)
    assert set(letters) == set(clean_sources) and len(letters) >= len(clean_sources)


def test_a_rebalance_mid_stream_neither_skips_nor_doubles(
    kafka_bootstrap: str, postgres_url: str, second_postgres_url: str
) -> None:
    """Two consumers of a group share the stream; one leaves with messages still to come, and the other takes
    its partitions over from the recorded positions: every message is applied once, and the ledger equals a
    clean run's."""
    topic, group = unique("rebalance"), unique("g")
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    lines = generate(8_000, 400, 500, seed=78)
    before_leaving, after_leaving = lines[:5_000], lines[5_000:]

    produce(kafka_bootstrap, topic, before_leaving)
    first, second = (start_consume(postgres_url, kafka_bootstrap, topic, group, "--batch-size", "100") for _ in "12")
    wait_for(lambda: recorded(postgres_url, topic) == 5_000, 120, "the first part to be recorded")
    first.send_signal(signal.SIGTERM)  # a rebalance: the second consumer takes every partition
    first_out, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, first_err
    produce(kafka_bootstrap, topic, after_leaving)  # only the second consumer is left to apply these
    wait_for(lambda: recorded(postgres_url, topic) == 8_000, 120, "the rest to be recorded")
    second.send_signal(signal.SIGTERM)
    second_out, second_err = second.communicate(timeout=60)
    assert second.returncode == 0, second_err

    first_tally, second_tally = json.loads(first_out), json.loads(second_out)
    assert second_tally["processed"] >= len(after_leaving)
    assert first_tally["processed"] + second_tally["processed"] == 8_000  # each message handled once in all
    consume_to_end(second_postgres_url, kafka_bootstrap, topic, unique("g"))
    assert ledger_contents(postgres_url) == ledger_contents(second_postgres_url)


def test_a_broker_that_loses_everything_does_not_make_the_ledger_apply_twice(postgres_url: str, tmp_path: Path) -> None:
    keyed = [line for line in generate(3_000, 80, 300, seed=79) if member_key(line) is not None]
    new = [line for line in generate(600, 80, 300, seed=80) if member_key(line) is not None]
    stream = tmp_path / "all.jsonl"
    stream.write_bytes(b"\n".join(keyed + new) + b"\n")
    topic, group = unique("restart"), unique("g")
    broker = LocalBroker().start()
    try:
        create_topic(broker.bootstrap_servers, topic, PARTITIONS)
        produce(broker.bootstrap_servers, topic, keyed)
        process = start_consume(postgres_url, broker.bootstrap_servers, topic, group)
        wait_for(lambda: recorded(postgres_url, topic) == len(keyed), 120, "the first stream to be recorded")
        broker.stop()
        broker.start()  # same port, nothing in it: no topics, no groups, no offsets
        create_topic(broker.bootstrap_servers, topic, PARTITIONS)
        produce(broker.bootstrap_servers, topic, keyed)  # the same messages again, at the same offsets
        produce(broker.bootstrap_servers, topic, new)
        wait_for(lambda: recorded(postgres_url, topic) == len(keyed) + len(new), 120, "the new messages")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        broker.stop()
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["processed"] == len(keyed) + len(new)  # the replayed ones were not even read twice

    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    assert cli("ingest", str(stream), "--format", "json", store=reference).returncode == 0
    total, _, balances = ledger_contents(postgres_url)
    reference_total, _, reference_balances = ledger_contents(reference)
    assert (total, balances) == (reference_total, reference_balances)


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, PgServer]]:
    """A throwaway PostgreSQL server of our own (the shared one is never stopped): (URL, server)."""
    with pg_server() as server:
        yield server.url(), server


def test_a_database_outage_means_bounded_retries_then_exit_3_with_nothing_committed(
    kafka_bootstrap: str, own_postgres: tuple[str, PgServer]
) -> None:
    store, server = own_postgres
    topic, group = unique("outage"), unique("g")
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    first = generate(1_000, 50, 100, seed=81)
    produce(kafka_bootstrap, topic, first)
    process = start_consume(store, kafka_bootstrap, topic, group, "--store-attempts", "3",
                            env={"POSTGRES_CONNECT_TIMEOUT": "1"})  # fmt: skip
    wait_for(lambda: recorded(store, topic) == 1_000, 120, "the first messages to be recorded")
    before = positions(store, topic, PARTITIONS)

    server.stop()
    produce(kafka_bootstrap, topic, generate(200, 50, 100, seed=82))
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 3, stderr
    assert "store unavailable" in stderr and "retry 1/2" in stderr and "retry 2/2" in stderr
    assert "Traceback" not in stderr

    server.start()
    assert positions(store, topic, PARTITIONS) == before  # nothing of the failed batch was recorded
    committed = committed_offsets(kafka_bootstrap, topic, group)
    for partition in range(PARTITIONS):
        offset, recorded_at = committed[partition], before[partition]
        assert offset is None or offset <= (recorded_at if recorded_at is not None else -1) + 1, committed


def committed_offsets(bootstrap: str, topic: str, group: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(**KafkaSettings(bootstrap).consumer_config(group, 10))
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        consumer.close(autocommit=False)


def test_a_partition_is_applied_in_transactions_of_at_most_the_batch_size(
    kafka_bootstrap: str, postgres_url: str
) -> None:
    """A poll may return far more of one partition's records than a batch: they go in batch-sized transactions,
    so the process killing itself right after its third commit has recorded at most three batches."""
    topic = unique("sized")
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    produce(kafka_bootstrap, topic, generate(1_000, 1, 100, seed=5))  # one member: all in one partition
    crash_env = {CRASH_AFTER_BATCH_ENV: "3"}
    process = start_consume(postgres_url, kafka_bootstrap, topic, unique("g"), "--batch-size", "10", env=crash_env)
    process.communicate(timeout=120)  # a poll asks for 10 per partition held: up to 40 of the one with data
    assert process.returncode == -signal.SIGKILL
    assert 0 < recorded(postgres_url, topic) <= 30  # a poll may bring less than a batch, never a bigger one


def test_a_database_restart_under_a_running_consume_neither_loses_nor_doubles_nor_dead_letters_twice(
    kafka_bootstrap: str, own_postgres: tuple[str, PgServer], postgres_url: str
) -> None:
    """The review's experiment: PostgreSQL stopped in immediate mode (a crash) while `consume` applies a stream,
    then started again. Balances end exact, and each invalid message is dead-lettered once."""
    store, server = own_postgres
    topic, group = unique("restart-db"), unique("g")
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    create_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    lines = generate(6_000, 300, 365, seed=83)
    produce(kafka_bootstrap, topic, lines)
    process = start_consume(store, kafka_bootstrap, topic, group, "--batch-size", "100", "--store-attempts", "10",
                            "--until-caught-up", env={"POSTGRES_CONNECT_TIMEOUT": "1"})  # fmt: skip
    wait_for(lambda: recorded(store, topic) >= 1_500, 120, "part of the stream to be recorded")
    assert recorded(store, topic) < 6_000  # still under way
    server.stop()  # immediate: the transaction in flight is cut off
    time.sleep(3)
    server.start()
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert recorded(store, topic) == 6_000

    invalid = consume_to_end(postgres_url, kafka_bootstrap, topic, unique("g"))["invalid"]  # without the restart
    assert ledger_contents(store) == ledger_contents(postgres_url)
    sources = [
        tuple(int(value) for name, value in record.headers if name in {"source_partition", "source_offset"})
        for record in read_topic(kafka_bootstrap, f"{topic}.dlq")
    ]
    assert invalid > 0 and len(sources) == 2 * invalid  # the restarted run's and the clean run's, each once
    assert len(set(sources)) == invalid
