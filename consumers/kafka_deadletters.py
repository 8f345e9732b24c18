"""Dead letters on Kafka: the offending record unchanged, with headers saying where it came from and why.

A dead letter must be durable before the batch's position is recorded, or a
crash in between would lose it: `flush` waits for every acknowledgement and
raises if any write failed, so the caller records nothing and stops.

Once per process: a batch tried again (the store failed, or another writer
changed a member first) does not write the dead letters it already wrote;
`settled` forgets them once the batch is recorded. After a crash between a
dead letter's acknowledgement and the batch's commit, the batch is read again
and its dead letters written again (at least once): the headers
`source_topic`, `source_partition` and `source_offset` identify a repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from kafka.errors import KafkaError

from schemas import Invalid
from schemas.parsing import MESSAGE_MAX_BYTES

#: Header names on every dead letter (values are UTF-8).
HEADER_SOURCE_TOPIC = "source_topic"
HEADER_SOURCE_PARTITION = "source_partition"
HEADER_SOURCE_OFFSET = "source_offset"
HEADER_ERROR_CLASS = "error_class"
HEADER_ERROR_REASON = "error_reason"
HEADER_TRUNCATED = "truncated"
#: Seconds `flush` waits for acknowledgements.
FLUSH_TIMEOUT_S = 60.0
#: A dead letter keeps the record whole up to these sizes, so that it always fits one produce request
#: (consumers/kafka_settings.PRODUCE_REQUEST_MAX_BYTES). Beyond them the value and key keep their first
#: bytes, the record's own headers are left out, and the `truncated` header says what was cut; the whole
#: record stays in the source topic at the offset the headers name.
DEAD_LETTER_VALUE_MAX_BYTES = 2 * MESSAGE_MAX_BYTES
DEAD_LETTER_KEY_MAX_BYTES = 64 * 1024
DEAD_LETTER_OWN_HEADERS_MAX_BYTES = 256 * 1024


class DeadLetterWriteError(RuntimeError):
    """A dead letter could not be written; its batch must not be recorded."""


class ConsumedRecord(Protocol):
    """What we read of a kafka-python ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    #: Milliseconds since the epoch (CreateTime or LogAppendTime); -1 or None when the record has none.
    timestamp: int | None


def dead_letter_headers(record: ConsumedRecord, invalid: Invalid) -> list[tuple[str, bytes]]:
    return [
        (HEADER_SOURCE_TOPIC, record.topic.encode()),
        (HEADER_SOURCE_PARTITION, str(record.partition).encode()),
        (HEADER_SOURCE_OFFSET, str(record.offset).encode()),
        (HEADER_ERROR_CLASS, invalid.error_class.encode()),
        (HEADER_ERROR_REASON, invalid.reason.encode("utf-8", "replace")),
    ]


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """What is produced for one offending record: unchanged when it fits, else cut as the headers say."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter_record(record: ConsumedRecord, invalid: Invalid) -> DeadLetterRecord:
    key, value, own = record.key, record.value, list(record.headers or [])
    cut: list[str] = []
    if value is not None and len(value) > DEAD_LETTER_VALUE_MAX_BYTES:
        value, cut = value[:DEAD_LETTER_VALUE_MAX_BYTES], [*cut, f"value of {len(value)} bytes"]
    if key is not None and len(key) > DEAD_LETTER_KEY_MAX_BYTES:
        key, cut = key[:DEAD_LETTER_KEY_MAX_BYTES], [*cut, f"key of {len(key)} bytes"]
    if sum(len(name) + len(data or b"") for name, data in own) > DEAD_LETTER_OWN_HEADERS_MAX_BYTES:
        own, cut = [], [*cut, f"{len(own)} headers"]
    headers = [*own, *dead_letter_headers(record, invalid)]
    if cut:
        headers.append((HEADER_TRUNCATED, ("cut: " + ", ".join(cut)).encode()))
    return DeadLetterRecord(key, value, headers)


class KafkaDeadLetters:
    """Produces dead letters to `topic_for(source topic)` and confirms them on `flush`."""

    def __init__(self, producer: Any, topic_for: dict[str, str]) -> None:
        self._producer = producer
        self._topic_for = topic_for
        self._pending: list[tuple[ConsumedRecord, Any]] = []
        #: (topic, partition, offset) of dead letters acknowledged for batches not yet recorded.
        self._delivered: set[tuple[str, int, int]] = set()

    def send(self, record: ConsumedRecord, invalid: Invalid) -> None:
        """Produce the dead letter of `record`, unless an earlier try of its batch already wrote it."""
        if (record.topic, record.partition, record.offset) in self._delivered:
            return
        topic = self._topic_for[record.topic]
        try:
            letter = dead_letter_record(record, invalid)
            future = self._producer.send(topic, key=letter.key, value=letter.value, headers=letter.headers)
        except (KafkaError, ValueError, AssertionError) as error:
            raise self._failure(record, topic, error) from error
        self._pending.append((record, future))

    def flush(self) -> int:
        """Wait until every dead letter sent is acknowledged; return how many."""
        pending, self._pending = self._pending, []
        if not pending:
            return 0
        try:
            self._producer.flush(timeout=FLUSH_TIMEOUT_S)
        except KafkaError as error:
            record, _ = pending[0]
            raise self._failure(record, self._topic_for[record.topic], error) from error
        for record, future in pending:
            if not future.is_done or future.failed():
                reason = future.exception if future.is_done else TimeoutError("no acknowledgement")
                raise self._failure(record, self._topic_for[record.topic], reason)
        self._delivered.update((record.topic, record.partition, record.offset) for record, _ in pending)
        return len(pending)

    def settled(self, topic: str, partition: int, through_offset: int) -> None:
        """The partition's batch through `through_offset` is recorded: its dead letters need no remembering."""
        self._delivered = {key for key in self._delivered if key[:2] != (topic, partition) or key[2] > through_offset}

    def close(self) -> None:
        self._producer.close(timeout=FLUSH_TIMEOUT_S)

    @staticmethod
    def _failure(record: ConsumedRecord, topic: str, error: BaseException | None) -> DeadLetterWriteError:
        where = f"{record.topic}/{record.partition}@{record.offset}"
        return DeadLetterWriteError(f"cannot write the dead letter of {where} to topic {topic}: {error}")
