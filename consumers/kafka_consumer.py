"""The Kafka consume loop: poll, record per partition, commit offsets, follow rebalances, stop cleanly.

The ledger, not Kafka, holds the truth about what was consumed: on every
assignment a partition is paused until its recorded position is read, then
resumes right after it. Kafka offsets are committed after the database commit
only so that ordinary lag tools work. Rebalance callbacks run on
kafka-python's IO thread; a lock makes a revocation wait for the batch in
flight, so a partition is never given away half-applied.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kafka.codec
import kafka.record
from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.errors import CorruptRecordError, UnsupportedCodecError
from kafka.structs import OffsetAndMetadata, TopicPartition

from consumers.catch_up import CatchUp
from consumers.defaults import PARTITIONS_PER_POLL_MAX
from consumers.idle import IdleClock
from consumers.kafka_batch import record_batch, upstream_name
from consumers.kafka_deadletters import KafkaDeadLetters
from consumers.metrics import ConsumerMetrics
from consumers.retry import RetryPolicy, call_store
from ledger.application import LedgerApplication
from ledger.outcomes import Tally
from ledger.storage.positions import PositionConflictError

#: Milliseconds one poll waits for records (also how quickly a stop request is noticed).
POLL_TIMEOUT_MS = 500
#: Seconds without group membership before we say so on stderr (and again every this often).
UNREACHABLE_WARNING_S = 10.0
#: With --until-idle, extra seconds allowed without partitions (a group join can wait for dead members).
UNASSIGNED_GRACE_S = 60.0


#: What kafka-python raises from poll() when it cannot decode a fetched record batch. Failures of the codec
#: libraries themselves (lz4, snappy, zstandard, zlib) have their own types and are told by where they come from.
DECODING_ERRORS = (UnsupportedCodecError, CorruptRecordError)
#: Where kafka-python decodes and decompresses record batches.
_DECODING_CODE = (Path(kafka.record.__file__).parent, Path(kafka.codec.__file__))
#: The pip package that gives kafka-python each codec (gzip is in the standard library).
CODEC_PACKAGES = {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}


class UnreadableBatchError(RuntimeError):
    """kafka-python cannot decode a fetched record batch: nothing of it is recorded, its position stays put.

    `partition` and `offset` are None when kafka-python did not say where it was reading (they come
    from its fetcher's state, see `unreadable_batch`).
    """

    def __init__(self, topic: str | None, partition: int | None, offset: int | None, cause: BaseException) -> None:
        self.topic, self.partition, self.offset, self.cause = topic, partition, offset, cause
        where = (
            f"{topic}/{partition}@{offset}"
            if topic is not None and partition is not None and offset is not None
            else "an unknown partition and offset"
        )
        text = str(cause).strip()
        reason = text.splitlines()[0].removeprefix(f"{type(cause).__name__}: ") if text else "no reason given"
        super().__init__(
            f"cannot read the record batch at {where} ({type(cause).__name__}: {reason}): {_what_to_do(cause)}"
        )


def _what_to_do(cause: BaseException) -> str:
    if isinstance(cause, UnsupportedCodecError):
        missing = re.search(r"for (\w+) compression codec", str(cause))
        if missing:
            codec = missing.group(1)
            package = CODEC_PACKAGES.get(codec, codec)
            return f"the batch is {codec}-compressed; install the {codec} codec library (pip install {package})"
        return "the batch uses a compression codec kafka-python does not know; produce with gzip, snappy, lz4 or zstd"
    if isinstance(cause, CorruptRecordError):
        return "the batch is corrupt (check the producer and the broker; it cannot be read as it is)"
    return "its compressed data could not be decoded (check the producer's codec and the codec library's version)"


def is_decoding_failure(error: BaseException) -> bool:
    """Did kafka-python's poll() raise this while decoding a record batch?"""
    if isinstance(error, DECODING_ERRORS):
        return True
    for frame in traceback.extract_tb(error.__traceback__):
        path = Path(frame.filename)
        if any(path == code or code in path.parents for code in _DECODING_CODE):
            return True
    return False


def unreadable_batch(consumer: KafkaConsumer, error: BaseException) -> UnreadableBatchError:
    """The error for a decoding failure from `consumer.poll()`, naming the partition and offset it was reading.

    kafka-python's exceptions do not carry them. Its fetcher does: a failure is raised (at once, or one
    poll later when other records came first) while it takes records from the partition's parsed fetch,
    `Fetcher._next_partition_records`, which stays in place afterwards; its `next_fetch_offset` is the
    first offset not yet returned, that is the start of the batch that failed (or the fetch position
    inside it). Read defensively: another kafka-python version may keep them elsewhere.
    """
    records = getattr(getattr(consumer, "_fetcher", None), "_next_partition_records", None)
    partition = getattr(records, "topic_partition", None) if records else None
    offset = getattr(records, "next_fetch_offset", None) if records else None
    if isinstance(partition, TopicPartition) and isinstance(offset, int):
        return UnreadableBatchError(partition.topic, partition.partition, offset, error)
    return UnreadableBatchError(None, None, None, error)


@dataclass(frozen=True)
class ConsumeOptions:
    topics: tuple[str, ...]
    group: str
    batch_size: int
    until_idle_s: float | None = None
    store_retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Test hook: SIGKILL this process right after the Nth batch's database commit, before the offset commit.
    crash_after_batch: int | None = None
    #: Stop once every partition is applied through the end offset it had at the start (consumers/catch_up.py).
    until_caught_up: bool = False
    #: Test hook: SIGKILL this process in the Nth batch, once its dead letters are confirmed and before anything
    #: of it is recorded.
    crash_before_commit: int | None = None


class LedgerConsumer:
    """Applies Kafka records to the ledger with an exactly-once effect."""

    def __init__(
        self,
        app: LedgerApplication,
        consumer: KafkaConsumer,
        dead_letters: KafkaDeadLetters,
        options: ConsumeOptions,
        *,
        metrics: ConsumerMetrics,
        warn: Callable[[str], None],
    ) -> None:
        self.app = app
        self.consumer = consumer
        self.dead_letters = dead_letters
        self.options = options
        self.metrics = metrics
        self.warn = warn
        self.tally = Tally()
        self._lock = threading.Lock()
        self._owned: set[TopicPartition] = set()
        self._pending: set[TopicPartition] = set()
        self._recorded: dict[TopicPartition, int | None] = {}
        self._uncommitted: dict[TopicPartition, int] = {}
        self._batches = 0
        self._member_at = time.monotonic()
        self._warned_at: float | None = None

    # ---- the loop ---------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event,
        on_progress: Callable[[Tally], None] | None = None,
        catch_up: CatchUp | None = None,
    ) -> Tally:
        """Consume until `stop` is set, or until idle for `until_idle_s` (see consumers/idle.py), or, with
        `catch_up`, until every partition is applied through the end it names (consumers/catch_up.py)."""
        self.consumer.subscribe(list(self.options.topics), listener=_Rebalance(self))
        self._member_at = time.monotonic()
        limit = self.options.until_idle_s
        idle = None if limit is None else IdleClock(limit, UNASSIGNED_GRACE_S, self._member_at)
        try:
            while not stop.is_set():
                if catch_up is not None and catch_up.reached(lambda partition: self._applied_through(partition, stop)):
                    break
                polled = self._poll()
                resumed = self._resume_pending(stop)
                now = time.monotonic()
                self._warn_if_unassigned(now)
                if idle is not None:
                    with self._lock:
                        settled = bool(self._owned) and not self._pending
                    idle.observe(now, settled=settled, active=bool(polled) or resumed)
                if polled:
                    for partition, records in polled.items():
                        size = self.options.batch_size
                        for start in range(0, len(records), size):  # a batch per transaction, in order
                            if stop.is_set() or not self._apply(partition, records[start : start + size]):
                                break
                    self._commit_offsets()
                    if on_progress is not None:
                        on_progress(self.tally)
                self._report_lag()
                if idle is not None and idle.expired(now):
                    break
        finally:
            self._commit_offsets()
        return self.tally

    def _poll(self) -> dict[TopicPartition, list[Any]]:
        """One poll; a batch kafka-python cannot decode stops the loop with UnreadableBatchError.

        Stopping is the only safe answer: kafka-python (3.0.12) spins forever in the next poll after such
        a failure, and skipping the batch would lose its messages. Nothing of it has been returned, so
        nothing of it is recorded; the ledger's position for the partition stays just before it.
        """
        try:
            polled: dict[TopicPartition, list[Any]] = self.consumer.poll(
                timeout_ms=POLL_TIMEOUT_MS, max_records=self._records_per_poll()
            )
        except Exception as error:
            if not is_decoding_failure(error):
                raise
            raise unreadable_batch(self.consumer, error) from error
        return polled

    def _records_per_poll(self) -> int:
        """Up to a batch per owned partition: each partition's records of a poll are one transaction, so asking
        for one batch in all would split it into a small transaction per partition."""
        with self._lock:
            owned = len(self._owned)
        return self.options.batch_size * max(1, min(owned, PARTITIONS_PER_POLL_MAX))

    def _warn_if_unassigned(self, now: float) -> None:
        """Say so (every UNREACHABLE_WARNING_S) while this consumer has no partitions."""
        if self._owned:
            self._member_at, self._warned_at = now, None
        elif now - self._member_at >= UNREACHABLE_WARNING_S and (
            self._warned_at is None or now - self._warned_at >= UNREACHABLE_WARNING_S
        ):
            self.warn(
                f"no partitions assigned for {now - self._member_at:.0f} s "
                "(broker unreachable, topic missing, or more consumers in the group than partitions)"
            )
            self._warned_at = now

    def close(self) -> None:
        """Close both clients, even if the first fails."""
        try:
            self.consumer.close(autocommit=False)
        finally:
            self.dead_letters.close()

    # ---- one partition batch ----------------------------------------------------------------

    def _apply(self, partition: TopicPartition, records: list[Any]) -> bool:
        """Record one batch of a partition's records (those after its recorded position); False when the rest
        of this poll's records of the partition must not be applied (given away, not yet positioned, or
        moved on by another writer: they will be read again from the right place)."""
        with self._lock:
            if partition not in self._owned or partition in self._pending:
                return False  # given away, or its position is not known yet: it will be read again
            previous = self._recorded.get(partition)
            fresh = [record for record in records if previous is None or record.offset > previous]
            if not fresh:
                return True
            started = time.perf_counter()
            before_commit = _kill_self if self._batches + 1 == self.options.crash_before_commit else None
            try:
                result = call_store(
                    lambda: record_batch(self.app, fresh, previous, self.dead_letters, before_commit=before_commit),
                    self.options.store_retry,
                    self.warn,
                )
            except PositionConflictError:
                self._resync(partition, fresh[-1].offset)
                return False
            finally:
                self.dead_letters.settled(partition.topic, partition.partition, fresh[-1].offset)
            self._recorded[partition] = result.last_offset
            self._uncommitted[partition] = result.last_offset + 1
            self._batches += 1
            if self._batches == self.options.crash_after_batch:
                _kill_self()
        self.tally.add(result.tally)
        self.metrics.batch(
            result.tally, time.perf_counter() - started, partition.topic, partition.partition, result.last_offset
        )
        return True

    def _resync(self, partition: TopicPartition, last_offset: int) -> None:
        """The partition's recorded position is not where this batch expected: continue after it."""
        position = self._stored_position(partition, None)
        where = f"{partition.topic}/{partition.partition}"
        if position == last_offset:
            # A retry after a commit whose acknowledgement was lost: the batch is in the ledger.
            self.warn(f"{where} batch up to {last_offset} was already recorded (its commit was not acknowledged)")
            self._uncommitted[partition] = last_offset + 1
        else:
            self.warn(f"{where} was recorded elsewhere up to {position}; continuing after it")
        self._seek(partition, position)

    # ---- positions --------------------------------------------------------------------------

    def _stored_position(self, partition: TopicPartition, stop: threading.Event | None) -> int | None:
        name = upstream_name(partition.topic, partition.partition)
        return call_store(lambda: self.app.position(name), self.options.store_retry, self.warn, stop)

    def _seek(self, partition: TopicPartition, position: int | None) -> None:
        self._recorded[partition] = position
        if position is None:
            self.consumer.seek_to_beginning(partition)
        else:
            self.consumer.seek(partition, position + 1)

    def _resume_pending(self, stop: threading.Event) -> bool:
        """Seek newly assigned partitions to their recorded position + 1, then let them fetch.
        True if any partition was resumed."""
        with self._lock:
            pending = list(self._pending)
        resumed = False
        for partition in pending:
            position = self._stored_position(partition, stop)
            with self._lock:
                if partition not in self._pending:
                    continue
                self._pending.discard(partition)
                if partition in self._owned:
                    self._seek(partition, position)
                    self.consumer.resume(partition)
                    resumed = True
        return resumed

    def _assigned(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self._owned.update(partitions)
            self._pending.update(partitions)
            self.consumer.pause(*partitions)

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        with self._lock:  # waits for the batch in flight
            for partition in partitions:
                self._owned.discard(partition)
                self._pending.discard(partition)
                self._recorded.pop(partition, None)
                self.metrics.forget(partition.topic, partition.partition)

    # ---- Kafka offsets and lag --------------------------------------------------------------

    def _commit_offsets(self) -> None:
        """Commit recorded positions to Kafka for lag tools; the ledger's own record is what counts."""
        with self._lock:
            offsets = {
                partition: OffsetAndMetadata(offset, "", -1)
                for partition, offset in self._uncommitted.items()
                if partition in self._owned
            }
            self._uncommitted.clear()
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except Exception as error:  # advisory only: positions live in the ledger
            self.warn(f"Kafka offset commit failed ({type(error).__name__}: {error}); the ledger's positions stand")

    def _report_lag(self) -> None:
        with self._lock:
            positions = {p: r for p, r in self._recorded.items() if p in self._owned and p not in self._pending}
        for partition, recorded in positions.items():
            highwater = self.consumer.highwater(partition)
            if highwater is not None:
                lag = max(highwater - self._next_offset(partition, recorded), 0)
                self.metrics.lag_of(partition.topic, partition.partition, lag)

    def _applied_through(self, partition: TopicPartition, stop: threading.Event) -> int:
        """The first offset of `partition` not yet applied: from the client's position while this consumer holds
        the partition, else from the position the ledger recorded (another consumer of the group holds it)."""
        with self._lock:
            held = partition in self._owned and partition not in self._pending
            recorded = self._recorded.get(partition)
        if held:
            return self._next_offset(partition, recorded)
        position = self._stored_position(partition, stop)
        return 0 if position is None else position + 1

    def _next_offset(self, partition: TopicPartition, recorded: int | None) -> int:
        """The first offset not yet applied: after the recorded position, and after the offsets the client has
        moved past without a record to apply (transaction markers; with read_committed, aborted records)."""
        after_recorded = recorded + 1 if recorded is not None else 0
        try:
            fetched = self.consumer.position(partition, timeout_ms=0)
        except Exception:  # advisory: a partition given away meanwhile has no position to ask for
            return after_recorded
        return max(after_recorded, fetched if isinstance(fetched, int) else 0)


def _kill_self() -> None:
    """The crash of the test hooks: SIGKILL, so that nothing of Python's own shutdown runs."""
    os.kill(os.getpid(), signal.SIGKILL)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: LedgerConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.owner._revoked(revoked)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.owner._assigned(assigned)

    def on_partitions_lost(self, lost: list[TopicPartition]) -> None:
        self.owner._revoked(lost)
