"""One partition batch: parse, dead-letter the invalid, record the rest with the partition's position.

The order is what makes the effect exactly-once: dead letters are confirmed
first, then the events and the position are recorded in one transaction.
A crash before that commit records nothing (the batch is read again); a crash
after it leaves the position saying so (the batch is skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from consumers.intake import Intake
from consumers.kafka_deadletters import ConsumedRecord, KafkaDeadLetters
from ledger.application import LedgerApplication
from ledger.outcomes import Tally
from ledger.storage.positions import Position
from schemas import parse_message


def upstream_name(topic: str, partition: int) -> str:
    """The tracking name of a Kafka partition in the ledger."""
    return f"kafka:{topic}:{partition}"


def recorded_through(app: LedgerApplication, topic: str, last_offsets: dict[int, int]) -> bool:
    """Has the ledger recorded each partition of `topic` at least up to its offset here?"""
    for partition, offset in last_offsets.items():
        position = app.position(upstream_name(topic, partition))
        if position is None or position < offset:
            return False
    return True


@dataclass(frozen=True, slots=True)
class BatchResult:
    tally: Tally
    last_offset: int


def record_time(record: ConsumedRecord) -> datetime | None:
    """The record's timestamp (CreateTime or LogAppendTime), None if it has none that a datetime can hold."""
    if record.timestamp is None or record.timestamp < 0:
        return None
    try:
        return datetime.fromtimestamp(record.timestamp / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def received_at(record: ConsumedRecord, now: datetime) -> datetime:
    """When a record reached Kafka: its timestamp, unless missing or ahead of our clock. A replay of the
    topic judges every message by the same time, so it decides the same; a producer whose clock runs
    ahead cannot make a message from the future look timely."""
    stamped = record_time(record)
    return now if stamped is None else min(stamped, now)


def record_batch(
    app: LedgerApplication,
    records: Sequence[ConsumedRecord],
    previous: int | None,
    dead_letters: KafkaDeadLetters,
    *,
    before_commit: Callable[[], None] | None = None,
) -> BatchResult:
    """Apply one partition's records (in offset order, all after `previous`) in one transaction.

    Invalid records, and records a rule fails on, are dead-lettered (confirmed before the commit).
    Raises DeadLetterWriteError (nothing recorded) or PositionConflictError when another
    writer recorded this partition first (nothing recorded; re-read the position). `before_commit` (a test
    hook) is called once the invalid records' dead letters are confirmed, before anything is recorded.
    """
    if not records:
        raise ValueError("an empty batch has no position to record")
    topic, partition = records[0].topic, records[0].partition
    now = datetime.now(UTC)
    acceptance = app.program.acceptance()
    intake: Intake[ConsumedRecord] = Intake(dead_letters.send, dead_letters.flush)
    for record in records:
        if record.topic != topic or record.partition != partition:
            raise ValueError("a batch holds the records of one partition")
        parsed = parse_message(record.value or b"", acceptance, received_at=received_at(record, now))
        intake.take(record, parsed, {"topic": topic, "partition": partition, "offset": record.offset})
    batch, dead_letter_failures = intake.cut()
    if before_commit is not None:
        before_commit()
    last_offset = records[-1].offset
    position = Position(upstream_name(topic, partition), last_offset, previous)
    intake.count(app.apply_batch(batch, position, on_failures=dead_letter_failures))
    return BatchResult(intake.tally, last_offset)
