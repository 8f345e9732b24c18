"""Read-only probes of a Kafka cluster, for `check`: an admin connection, the topics and a group's offsets
it sees, the newest record timestamps of topics, and the compression codecs this process can read.

They open clients the way the consumer does (consumers.kafka_clients) and try each thing once, with short
timeouts; `check` decides what to probe and how to report it. kafka-python's errors pass through.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka import codec as kafka_codec

from consumers.kafka_batch import record_time
from consumers.kafka_clients import check_security
from consumers.kafka_settings import KafkaSettings

#: Milliseconds each Kafka step waits.
KAFKA_TIMEOUT_MS = 5_000
#: Milliseconds to read one record when sampling a topic's newest timestamp.
SAMPLE_TIMEOUT_MS = 3_000
#: Offsets read back from a partition's end to sample its newest record: a transactional producer's commit
#: marker takes the last offset, and the newest record is the one before it.
SAMPLE_OFFSETS_BACK = 2


def admin_client(settings: KafkaSettings) -> Any:
    """An admin client, once the security settings are shown to work (KafkaSecurityError if not); close it."""
    check_security(settings)
    return KafkaAdminClient(**settings.common(), request_timeout_ms=KAFKA_TIMEOUT_MS)


def topic_names(admin: Any) -> set[str]:
    """The topics this user may see."""
    return set(admin.list_topics())


def committed_partitions(admin: Any, group: str) -> int:
    """How many partitions `group` has committed offsets for (asks the group's coordinator)."""
    return len(admin.list_group_offsets(group).get(group, {}))


def newest_timestamps(settings: KafkaSettings, topics: list[str]) -> Iterator[tuple[str, datetime | None]]:
    """Each topic with its newest record's timestamp (None when it has no record to sample), in order."""
    if not topics:
        return
    consumer: KafkaConsumer | None = None
    try:
        consumer = KafkaConsumer(**settings.common(), enable_auto_commit=False, request_timeout_ms=KAFKA_TIMEOUT_MS)
        for topic in topics:
            yield topic, _newest_timestamp(consumer, topic)
    finally:
        if consumer is not None:
            consumer.close()


def _newest_timestamp(consumer: KafkaConsumer, topic: str) -> datetime | None:
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    if not partitions:
        return None
    consumer.assign(partitions)
    ends = consumer.end_offsets(partitions, timeout_ms=KAFKA_TIMEOUT_MS)
    for partition in partitions:
        consumer.seek(partition, max(ends.get(partition, 0) - SAMPLE_OFFSETS_BACK, 0))
    newest: datetime | None = None
    deadline = time.monotonic() + SAMPLE_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200, max_records=len(partitions) * 10).values():
            for record in records:
                stamped = record_time(record)
                if stamped is not None:
                    newest = stamped if newest is None else max(newest, stamped)
        if newest is not None:
            break
    return newest


def unreadable_codecs() -> list[str]:
    """The compression codecs whose batches this process cannot decode (their libraries are missing)."""
    return [name for name, has in (("snappy", kafka_codec.has_snappy), ("lz4", kafka_codec.has_lz4),
                                   ("zstd", kafka_codec.has_zstd)) if not has()]  # fmt: skip
