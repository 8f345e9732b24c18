"""Every Kafka compression codec is consumed, and a batch that cannot be decoded stops `consume` cleanly.

Batches are written by librdkafka (confluent-kafka, an independent client, as in production) and by
kafka-python (our own `produce` and dead-letter producer); each test checks that the batches really are
compressed in its codec by reading them with that codec's library switched off in kafka-python.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import confluent_kafka
import kafka.codec
import kafka.record.default_records
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CorruptRecordError, UnsupportedCodecError

from consumers.kafka_batch import upstream_name
from consumers.kafka_consumer import (
    ConsumeOptions,
    LedgerConsumer,
    UnreadableBatchError,
    is_decoding_failure,
    unreadable_batch,
)
from consumers.kafka_deadletters import KafkaDeadLetters, dead_letter_record
from consumers.kafka_producer import member_key, produce_lines
from consumers.kafka_settings import KafkaSettings
from consumers.metrics import ConsumerMetrics
from devkit.streamgen import generate
from projections.log import read_log
from schemas import Invalid
from tests.cli_helpers import cli, cli_env
from tests.kafka_helpers import (
    consume_args,
    create_topic,
    open_ledger,
    positions,
    produce,
    unique,
)

CODECS = ("gzip", "snappy", "lz4", "zstd")
#: Partitions of each codec's topic (2-4, so that more than one layout is covered).
PARTITIONS = {"gzip": 2, "snappy": 3, "lz4": 4, "zstd": 3}
#: Milliseconds librdkafka waits to fill a batch: the whole stream goes out in a few large compressed batches.
LINGER_MS = 200
#: The same stream for every codec: ~100 members, invalid lines included.
STREAM_MESSAGES, STREAM_MEMBERS = 2_000, 100
#: Run the real CLI with a codec library "missing" (kafka-python asks `kafka.codec.has_<codec>()`).
WITHOUT_LZ4 = "import kafka.codec as c; c.has_lz4 = lambda: False; from points_ledger.cli import run; run()"


def ok_json(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Stream:
    lines: list[bytes]
    #: `ingest` of the same lines: what every consume of them must tally.
    ingested: dict[str, int]


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    # The lines as `produce` and `ingest` read a file: blank ones are skipped.
    lines = [line for line in generate(STREAM_MESSAGES, STREAM_MEMBERS, 200, seed=43) if line.strip()]
    directory = tmp_path_factory.mktemp("codec-stream")
    path = directory / "stream.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    ingested = ok_json(cli("ingest", str(path), "--format", "json", "--dead-letter", str(directory / "dl.jsonl"),
                           store=f"sqlite:///{directory / 'ingested.db'}"))  # fmt: skip
    assert ingested["invalid"] > 0 and ingested["recorded"] > 1_000
    return Stream(lines, ingested)


def librdkafka_produce(bootstrap: str, topic: str, lines: list[bytes], codec: str) -> dict[int, int]:
    """Send the lines keyed like `produce` (same key → partition as kafka-python); partition → last offset
    as the delivery reports give it."""
    producer = confluent_kafka.Producer({
        "bootstrap.servers": bootstrap, "compression.type": codec, "partitioner": "murmur2_random",
        "acks": "all", "linger.ms": LINGER_MS, "enable.idempotence": False,
    })  # fmt: skip
    last: dict[int, int] = {}
    failures: list[str] = []

    def delivered(error: confluent_kafka.KafkaError | None, message: confluent_kafka.Message) -> None:
        if error is not None:
            failures.append(str(error))
            return
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None
        last[partition] = max(last.get(partition, -1), offset)

    for line in lines:
        producer.produce(topic, value=line, key=member_key(line), on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages left undelivered"
    assert not failures, failures[:3]
    return last


def assert_compressed(bootstrap: str, topic: str, partitions: int, codec: str) -> None:
    """Every partition's first batch is in `codec`: with that codec's library switched off, kafka-python
    cannot read it, and the fetcher state names the partition and offset 0."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kafka.codec, f"has_{codec}", lambda: False)
        for number in range(partitions):
            partition = TopicPartition(topic, number)
            consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
            consumer.assign([partition])
            consumer.seek_to_beginning(partition)
            try:
                with pytest.raises(UnsupportedCodecError, match=f"for {codec} compression codec") as raised:
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline:
                        consumer.poll(timeout_ms=500)
                assert is_decoding_failure(raised.value)
                error = unreadable_batch(consumer, raised.value)
                assert (error.topic, error.partition, error.offset) == (topic, number, 0)
            finally:
                consumer.close()


def kafka_python_records(bootstrap: str, topic: str, partitions: int, count: int) -> list[tuple[Any, ...]]:
    """(key, value, headers) of the first `count` records, read by kafka-python without a group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    assigned = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_beginning(*assigned)
    records: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + 30
    try:
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend((r.key, r.value, list(r.headers or [])) for r in batch)
    finally:
        consumer.close()
    return records


def librdkafka_records(bootstrap: str, topic: str, partitions: int, count: int) -> list[tuple[Any, ...]]:
    """(key, value, headers) of the first `count` records, read by librdkafka (confluent-kafka)."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": unique("rd"), "enable.auto.commit": False}
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                     for p in range(partitions)])  # fmt: skip
    records: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + 30
    try:
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            assert message.error() is None, message.error()
            records.append((message.key(), message.value(), list(message.headers() or [])))
    finally:
        consumer.close()
    return records


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_librdkafka_writes_is_consumed_exactly_once(
    kafka_bootstrap: str, sqlite_url: str, stream: Stream, codec: str
) -> None:
    topic = unique(f"codec-{codec}")
    partitions = PARTITIONS[codec]
    create_topic(kafka_bootstrap, topic, partitions)
    last_offsets = librdkafka_produce(kafka_bootstrap, topic, stream.lines, codec)
    assert sorted(last_offsets) == list(range(partitions))
    assert_compressed(kafka_bootstrap, topic, partitions, codec)

    consumed = ok_json(cli(*consume_args(kafka_bootstrap, topic, unique("g"), "--until-caught-up"), store=sqlite_url))
    assert consumed == stream.ingested
    assert positions(sqlite_url, topic, partitions) == last_offsets
    # From the start again (a new group): every position is recorded, nothing is applied twice.
    again = ok_json(cli(*consume_args(kafka_bootstrap, topic, unique("g"), "--until-idle", "1"), store=sqlite_url))
    assert again["processed"] == 0
    assert positions(sqlite_url, topic, partitions) == last_offsets


@dataclass
class _Record:
    """A consumed record as the dead-letter producer sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    timestamp: int | None = None


@pytest.mark.parametrize("codec", CODECS)
def test_what_kafka_python_writes_in_each_codec_reads_back_intact(kafka_bootstrap: str, codec: str) -> None:
    topic = unique(f"kp-{codec}")
    create_topic(kafka_bootstrap, topic, 2)
    producer = KafkaProducer(**KafkaSettings(kafka_bootstrap, compression=codec).producer_config())
    try:
        lines = generate(300, 20, 30, seed=11)
        produce_lines(producer, topic, lines)  # what `produce` does
        originals = [  # what the dead-letter producer does, with the records' own headers, binary ones too
            _Record("source", 1, offset, f"M{offset}".encode(), b"{not json " + bytes([offset]),
                    [("trace_id", f"t-{offset}".encode()), ("raw", bytes(range(offset % 7, 256, 7)))])
            for offset in range(40)
        ]  # fmt: skip
        letters = KafkaDeadLetters(producer, {"source": topic})
        for record in originals:
            letters.send(record, Invalid("bad JSON", "MalformedJSON"))
        assert letters.flush() == len(originals)
    finally:
        producer.close()
    invalid = Invalid("bad JSON", "MalformedJSON")
    expected: list[tuple[Any, ...]] = [(member_key(line), line, []) for line in lines]
    expected += [(r.key, r.value, dead_letter_record(r, invalid).headers) for r in originals]
    expected.sort(key=repr)  # keys may be None: compare as text
    assert_compressed(kafka_bootstrap, topic, 2, codec)
    assert sorted(kafka_python_records(kafka_bootstrap, topic, 2, len(expected)), key=repr) == expected
    assert sorted(librdkafka_records(kafka_bootstrap, topic, 2, len(expected)), key=repr) == expected


def test_an_unreadable_batch_stops_the_consumer_naming_where_and_records_nothing_of_it(
    kafka_bootstrap: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = unique("nolz4")
    create_topic(kafka_bootstrap, topic, 1)
    lines = generate(60, 5, 30, seed=3)
    produce(kafka_bootstrap, topic, lines[:3])  # uncompressed: offsets 0-2
    assert librdkafka_produce(kafka_bootstrap, topic, lines[3:], "lz4") == {0: len(lines) - 1}
    monkeypatch.setattr(kafka.codec, "has_lz4", lambda: False)

    settings = KafkaSettings(kafka_bootstrap, session_timeout_ms=3000, heartbeat_interval_ms=1000)
    consumer = KafkaConsumer(**settings.consumer_config(unique("g"), 100))
    app = open_ledger(sqlite_url)
    ledger_consumer = LedgerConsumer(
        app, consumer, KafkaDeadLetters(KafkaProducer(**settings.producer_config()), {topic: f"{topic}.dlq"}),
        ConsumeOptions((topic,), "g", 100), metrics=ConsumerMetrics(), warn=lambda text: None,
    )  # fmt: skip
    try:
        with pytest.raises(UnreadableBatchError, match=rf"at {re.escape(topic)}/0@3 \(UnsupportedCodecError") as raised:
            ledger_consumer.run(threading.Event())
    finally:
        ledger_consumer.close()
    assert (raised.value.topic, raised.value.partition, raised.value.offset) == (topic, 0, 3)
    assert "pip install lz4" in str(raised.value)
    try:
        # The uncompressed batch before it is recorded; nothing of the lz4 batch is.
        assert app.position(upstream_name(topic, 0)) == 2
        offsets = {event.provenance["source"]["offset"] for event in read_log(app)}
        assert offsets and max(offsets) <= 2
    finally:
        app.close()


def test_a_codec_library_failing_on_a_batch_is_an_unreadable_batch_and_other_errors_are_not(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = unique("badlz4")
    create_topic(kafka_bootstrap, topic, 1)
    librdkafka_produce(kafka_bootstrap, topic, generate(20, 3, 10, seed=5), "lz4")
    # As if the batch's compressed bytes were damaged: the lz4 library itself fails, with its own error type.
    monkeypatch.setattr(kafka.record.default_records, "lz4_decode", lambda data: kafka.codec.lz4_decode(b"garbage"))
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    try:
        with pytest.raises(Exception) as raised:  # whatever the codec library raises
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=500)
        assert not isinstance(raised.value, UnsupportedCodecError | CorruptRecordError)
        assert is_decoding_failure(raised.value)
        error = unreadable_batch(consumer, raised.value)
    finally:
        consumer.close()
    assert (error.topic, error.partition, error.offset) == (topic, 0, 0)
    assert "could not be decoded" in str(error)
    assert not is_decoding_failure(ValueError("not from kafka-python's record decoding"))


def test_consume_without_a_codec_library_exits_1_with_one_line_then_a_fixed_consume_takes_everything(
    kafka_bootstrap: str, sqlite_url: str, stream: Stream
) -> None:
    topic = unique("cli-nolz4")
    create_topic(kafka_bootstrap, topic, 3)
    last_offsets = librdkafka_produce(kafka_bootstrap, topic, stream.lines, "lz4")
    args = ["--store", sqlite_url, *consume_args(kafka_bootstrap, topic, unique("g"), "--until-caught-up")]
    broken = subprocess.run([sys.executable, "-c", WITHOUT_LZ4, *args], capture_output=True, text=True,
                            timeout=120, env=cli_env(), check=False)  # fmt: skip
    assert broken.returncode == 1, broken.stderr
    assert "Traceback" not in broken.stderr and "internal error" not in broken.stderr
    lines = broken.stderr.strip().splitlines()
    assert len(lines) == 1, broken.stderr
    where = re.search(
        rf"^points-ledger: error: cannot read the record batch at {re.escape(topic)}/(\d)@(\d+) ", lines[0]
    )
    assert where is not None, lines[0]
    assert int(where.group(1)) in last_offsets and where.group(2) == "0"  # every partition starts compressed
    assert "pip install lz4" in lines[0] and "nothing recorded" in lines[0]
    assert broken.stdout == ""
    assert positions(sqlite_url, topic, 3) == dict.fromkeys(range(3))

    # The library is back: the same group and store take everything, exactly once.
    fixed = ok_json(cli(*args[2:], store=sqlite_url))
    assert fixed == stream.ingested
    assert positions(sqlite_url, topic, 3) == last_offsets
