"""`consume` and `produce` against a real Kafka-protocol broker and real PostgreSQL."""

from __future__ import annotations

import json
import re
import signal
import threading
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from consumers.kafka_batch import recorded_through, upstream_name
from consumers.kafka_clients import CONNECT_DELAY_FIRST_S
from consumers.kafka_consumer import ConsumeOptions, LedgerConsumer
from consumers.kafka_deadletters import DeadLetterWriteError, KafkaDeadLetters
from consumers.kafka_settings import KafkaSettings
from consumers.metrics import ConsumerMetrics
from devkit.broker import free_port
from devkit.streamgen import INVALID_LINES, generate
from ledger.application import LedgerApplication
from ledger.storage.positions import Position
from schemas import Acceptance, Invalid, parse_message
from tests.cli_helpers import cli, one_line_error
from tests.kafka_helpers import (
    consume_args,
    create_topic,
    ledger_contents,
    open_ledger,
    positions,
    produce,
    read_topic,
    recorded_count,
    start_consume,
    unique,
    wait_for,
)
from tests.messages import encode, wire
from tests.ports import closed_port


def ok_json(result: object) -> dict[str, int]:
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    return json.loads(result.stdout)  # type: ignore[attr-defined, no-any-return]


def test_consume_equals_ingest_on_the_same_stream(
    kafka_bootstrap: str, postgres_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    lines = generate(4_000, 120, 400, seed=31)
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b"\n".join(lines) + b"\n")
    topic = unique("e2e")
    create_topic(kafka_bootstrap, topic, 4)
    sent = ok_json(cli("produce", str(stream), "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
                       "--format", "json"))  # fmt: skip
    messages = [line for line in lines if line.strip()]  # produce skips blank lines, as ingest does
    assert len(messages) < len(lines)
    assert sent == {"sent": len(messages), "without_key": sum(1 for line in messages if b'"member_id"' not in line),
                    "partitions": 4}  # fmt: skip

    consumed = ok_json(cli(*consume_args(kafka_bootstrap, topic, unique("g"), "--until-caught-up"), store=postgres_url))
    ingested = ok_json(cli("ingest", str(stream), "--format", "json", "--dead-letter", str(tmp_path / "dl.jsonl"),
                           store=sqlite_url))  # fmt: skip
    assert consumed == ingested
    assert consumed["recorded"] > 3_000 and consumed["duplicates"] > 0 and consumed["rejected"] > 0

    rollforward = ["report", "rollforward", "--from", "2024-03-31T00:00:00Z", "--to", "2024-12-31T00:00:00Z"]
    for command in (["balances"], ["report", "liability", "--as-of", "2025-02-01T00:00:00Z"], rollforward):
        from_kafka = cli(*command, "--format", "json", store=postgres_url)
        from_file = cli(*command, "--format", "json", store=sqlite_url)
        assert from_kafka.returncode == 0, from_kafka.stderr
        # Members enrol in log order, which differs between partitions and a file: compare as sets.
        assert sorted(from_kafka.stdout.splitlines()) == sorted(from_file.stdout.splitlines()), command

    # Consuming again from the start (a new group) changes nothing: every position is recorded.
    again = ok_json(cli(*consume_args(kafka_bootstrap, topic, unique("g"), "--until-idle", "1"), store=postgres_url))
    assert again["processed"] == 0


def test_every_kind_of_invalid_message_is_dead_lettered_with_headers_and_nothing_else(
    kafka_bootstrap: str, sqlite_url: str
) -> None:
    topic = unique("dlq")
    create_topic(kafka_bootstrap, topic, 2)
    valid = [
        encode(wire("purchase", "A", transaction_id="t1", amount="10.00", currency="USD")),
        encode(wire("redemption", "A", redemption_id="r1", points=1_000_000)),  # a rejection, not a dead letter
    ]
    huge = b'{"type":"purchase","pad":"' + b"x" * (1024 * 1024) + b'"}'
    last_offsets = produce(kafka_bootstrap, topic, [*valid, *INVALID_LINES, huge]).last_offsets
    with_headers = b'{"type": "purchase", "member_id": "B"}'  # incomplete; its own headers must survive
    producer = KafkaProducer(**KafkaSettings(kafka_bootstrap).producer_config())
    # Keyed lines all hash to partition 0 and unkeyed ones go anywhere: this one makes partition 1 non-empty.
    sent = producer.send(topic, key=b"B", value=with_headers, headers=[("trace_id", b"abc-123")], partition=1)
    last_offsets[1] = max(last_offsets.get(1, -1), sent.get(timeout=30).offset)
    producer.close()

    result = ok_json(cli(*consume_args(kafka_bootstrap, topic, unique("g"), "--until-caught-up"), store=sqlite_url))
    assert result == {"processed": len(INVALID_LINES) + 4, "recorded": 1, "duplicates": 0, "rejected": 1,
                      "invalid": len(INVALID_LINES) + 2, "failed": 0}  # fmt: skip

    letters = read_topic(kafka_bootstrap, f"{topic}.dlq")
    assert sorted(letter.value for letter in letters) == sorted([*INVALID_LINES, huge, with_headers])
    source = {record.value: record for record in read_topic(kafka_bootstrap, topic)}
    for letter in letters:
        headers = {name: value.decode() for name, value in letter.headers}
        original = source[letter.value]
        assert letter.headers[: len(original.headers)] == original.headers  # the record's own headers first
        assert letter.key == original.key
        assert headers["source_topic"] == topic
        assert (int(headers["source_partition"]), int(headers["source_offset"])) == (
            original.partition,
            original.offset,
        )
        expected = parse_message(letter.value, Acceptance(currency="USD"))
        if len(letter.value) > 1024 * 1024:
            assert headers["error_class"] == "TooLarge"
        else:
            assert isinstance(expected, Invalid)
            assert (headers["error_class"], headers["error_reason"]) == (expected.error_class, expected.reason)
    assert positions(sqlite_url, topic, 2) == last_offsets  # dead letters' positions are recorded too


def test_consume_until_caught_up_stops_at_the_end_the_topic_had_when_it_started(
    kafka_bootstrap: str, sqlite_url: str
) -> None:
    topic = unique("caught-up")
    create_topic(kafka_bootstrap, topic, 3)
    first = produce(kafka_bootstrap, topic, generate(1_200, 40, 100, seed=41)).last_offsets
    done = ok_json(cli(*consume_args(kafka_bootstrap, topic, unique("g"), "--until-caught-up"), store=sqlite_url))
    assert done["processed"] == sum(offset + 1 for offset in first.values())
    assert positions(sqlite_url, topic, 3) == first

    later = produce(kafka_bootstrap, topic, generate(300, 40, 100, seed=42)).last_offsets
    group = unique("g")  # two consumers of one group: each stops once every partition is recorded, its own or not
    pair = [start_consume(sqlite_url, kafka_bootstrap, topic, group, "--until-caught-up") for _ in range(2)]
    tallies = []
    for process in pair:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        tallies.append(json.loads(out)["processed"])
    assert sum(tallies) == sum(later[p] - first[p] for p in later)  # the new messages, each once
    assert positions(sqlite_url, topic, 3) == later

    missing = cli(*consume_args(kafka_bootstrap, unique("nope"), unique("g"), "--until-caught-up"), store=sqlite_url)
    one_line_error(missing, 1, "does not exist", "create it")


def test_recorded_through_counts_offset_zero_as_recorded(memory_ledger: LedgerApplication) -> None:
    assert not recorded_through(memory_ledger, "t", {0: 0})
    memory_ledger.apply_batch([], Position(upstream_name("t", 0), 0, None))
    assert recorded_through(memory_ledger, "t", {0: 0})
    assert not recorded_through(memory_ledger, "t", {0: 1})
    assert not recorded_through(memory_ledger, "t", {0: 0, 1: 0})


def test_a_dead_letter_that_cannot_be_written_stops_the_consumer_and_records_nothing(
    kafka_bootstrap: str, sqlite_url: str
) -> None:
    topic = unique("dlqfail")
    create_topic(kafka_bootstrap, topic, 1)
    produce(kafka_bootstrap, topic, [encode(wire("purchase", "A", transaction_id="t1", amount="1.00", currency="USD")),
                                     b"{not json"])  # fmt: skip
    settings = KafkaSettings(kafka_bootstrap, session_timeout_ms=3000, heartbeat_interval_ms=1000)
    # A real producer that refuses every record: larger than its max_request_size.
    refusing = KafkaProducer(**{**settings.producer_config(), "max_request_size": 16})
    consumer = KafkaConsumer(**settings.consumer_config(unique("g"), 100))
    app = open_ledger(sqlite_url)
    ledger_consumer = LedgerConsumer(
        app, consumer, KafkaDeadLetters(refusing, {topic: f"{topic}.dlq"}), ConsumeOptions((topic,), "g", 100),
        metrics=ConsumerMetrics(), warn=lambda text: None,
    )  # fmt: skip
    with pytest.raises(DeadLetterWriteError, match=rf"{topic}/0@1 to topic {topic}.dlq"):
        ledger_consumer.run(threading.Event())
    ledger_consumer.close()
    assert app.position(upstream_name(topic, 0)) is None
    assert app.member("A") is None  # the valid message of the same batch was not recorded either
    app.close()


def test_metrics_while_running_then_sigterm_finishes_cleanly(kafka_bootstrap: str, postgres_url: str) -> None:
    topic = unique("metrics")
    create_topic(kafka_bootstrap, topic, 2)
    produce(kafka_bootstrap, topic, generate(1_500, 40, 100, seed=5))
    port = free_port()
    process = start_consume(postgres_url, kafka_bootstrap, topic, unique("g"), "--metrics-port", str(port))
    try:
        wait_for(lambda: recorded_count(postgres_url, topic, 2) == 1_500, 60,
                 "every message to be recorded")  # fmt: skip
        recorded = positions(postgres_url, topic, 2)
        body = ""

        def caught_up() -> bool:
            nonlocal body
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            return all(
                f'points_ledger_recorded_offset{{partition="{p}",topic="{topic}"}} {float(o or 0)}' in body
                for p, o in recorded.items()
            )

        wait_for(caught_up, 30, "the metrics to show the recorded offsets")
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "SIGTERM: stopping after the current batch" in stderr
    summary = json.loads(stdout)
    assert summary["processed"] == 1_500
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in body.splitlines() if not line.startswith("#")}
    outcomes = {o: values[f'points_ledger_messages_consumed_total{{outcome="{o}"}}']
                for o in ("recorded", "duplicate", "rejected", "invalid")}  # fmt: skip
    assert outcomes == {"recorded": summary["recorded"], "duplicate": summary["duplicates"],
                        "rejected": summary["rejected"], "invalid": summary["invalid"]}  # fmt: skip
    assert values["points_ledger_batch_duration_seconds_count"] >= 2
    assert values[f'points_ledger_recorded_offset{{partition="0",topic="{topic}"}}'] == recorded[0]
    assert values[f'points_ledger_consumer_lag_messages{{partition="0",topic="{topic}"}}'] == 0
    total, _, _ = ledger_contents(postgres_url)
    assert total > 1_000


def test_an_unreachable_broker_is_reported_and_retried_with_doubling_delays(sqlite_url: str) -> None:
    closed = f"127.0.0.1:{closed_port()}"
    process = start_consume(sqlite_url, closed, "t", "g")
    assert process.stderr is not None
    retries: list[float] = []
    first = process.stderr.readline()
    assert f"nothing answers at {closed}" in first and "points-ledger dev broker" in first, first  # what to do
    while len(retries) < 3:  # each retry is announced before its wait: three lines mean two waits done
        line = process.stderr.readline()
        assert line, "consume stopped before retrying three times"
        assert f"Kafka broker {closed} unreachable" in line, line
        retries.append(float(re.search(r"retrying in ([0-9.]+) s", line).group(1)))  # type: ignore[union-attr]
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["processed"] == 0
    # Not spinning: every attempt waits, twice as long as the one before (up to the cap).
    assert retries[0] == CONNECT_DELAY_FIRST_S and retries[1:] == [retries[0] * 2, retries[0] * 4], retries


def test_the_demo_runs_the_main_job_end_to_end(kafka_bootstrap: str, tmp_path: Path) -> None:
    ledger_file = tmp_path / "demo.db"
    result = cli("demo", "--members", "60", "--messages-per-member", "10", "--ledger", str(ledger_file),
                 env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})  # fmt: skip
    assert result.returncode == 0, result.stderr
    for heading in ("messages", "members per tier", "top 10 balances", "points liability", "done in"):
        assert heading in result.stdout
    assert "dead_letters" in result.stdout and "duplicates" in result.stdout
    total, _, balances = ledger_contents(f"sqlite:///{ledger_file}")
    assert len(balances) == 60 and total > 500


def test_kafka_usage_errors_are_one_line_with_their_status(sqlite_url: str, tmp_path: Path) -> None:
    bad_topic = cli("consume", "--topic", "no/slashes", store=sqlite_url)
    assert bad_topic.returncode == 2 and "is not a Kafka topic name" in bad_topic.stderr
    same = cli("consume", "--topic", "a", "--dead-letter-topic", "a", store=sqlite_url)
    assert same.returncode == 2 and "cannot be one of the consumed topics" in same.stderr
    closed = f"127.0.0.1:{closed_port()}"
    (tmp_path / "one.jsonl").write_text('{"type": "enrollment"}\n')
    produce_fails = cli("produce", str(tmp_path / "one.jsonl"), "--bootstrap-servers", closed)
    assert produce_fails.returncode == 1, produce_fails.stderr
    assert f"Kafka broker {closed} unreachable" in produce_fails.stderr and "Traceback" not in produce_fails.stderr
