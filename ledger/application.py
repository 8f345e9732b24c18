"""The ledger application service: applies messages to members, one batch per transaction.

Built on the eventsourcing library's Application with a process recorder, so a
batch's events and (for Kafka) the upstream position it came from are written
in one transaction.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import (
    EventStore,
    IntegrityError,
    JSONTranscoder,
    ProcessRecorder,
    Tracking,
    Transcoder,
)
from eventsourcing.utils import get_topic

from ledger.limits import BATCH_SIZE_MAX, OutOfRangeError
from ledger.member import Member, Source, member_uuid
from ledger.originators import maybe_stored
from ledger.outcomes import FAILED, RECORDED, Decision, Failure
from ledger.pgbinary import use_binary_inserts
from ledger.pgconnect import configure_pool, schema_lock
from ledger.positions import PositionConflictError, guard_positions
from ledger.program import Program
from ledger.store import Store
from ledger.transcoding import LEDGER_TRANSCODINGS, LedgerTranscoder
from schemas import Enrollment, Message

#: Members kept in memory between batches (the write side is the only writer per member).
MEMBER_CACHE_SIZE = 50_000
#: A snapshot every this many events keeps long member histories cheap to load.
SNAPSHOT_INTERVAL = 100
#: Times a batch is retried after another writer changed one of its members first.
CONFLICT_RETRIES = 3
#: Rows per read when listing members.
PAGE_SIZE = 5_000
#: Told which messages of a batch failed, before anything is recorded; raising records nothing.
OnFailures = Callable[[Sequence[Failure]], None]


def _create_tables(recorder: Any, store: Store) -> None:
    """CREATE TABLE IF NOT EXISTS, one process at a time (see `schema_lock`)."""
    create = getattr(recorder, "create_table", None)
    if create is None:
        return  # in-memory recorders have no tables
    with schema_lock(store):
        create()


class LedgerApplication(Application[UUID]):
    """The system of record for points."""

    name = "Ledger"
    snapshotting_intervals = {Member: SNAPSHOT_INTERVAL}  # noqa: RUF012 (the library's class attribute)

    def __init__(self, store: Store, program: Program) -> None:
        self.program = program
        self.store = store
        self._members: OrderedDict[str, Member] = OrderedDict()
        # Tables are created here (see _create_tables), not by the library's factory.
        super().__init__(env={**store.env, "CREATE_TABLE": "no"})
        self.recorder: ProcessRecorder

    def construct_recorder(self) -> ProcessRecorder:
        configure_pool(self.factory, self.store)  # before the first connection: TLS, password, PG* fallbacks
        recorder = self.factory.process_recorder()
        _create_tables(recorder, self.store)
        use_binary_inserts(recorder)
        guard_positions(recorder)
        return recorder

    def construct_snapshot_store(self) -> EventStore[UUID]:
        configure_pool(self.factory, self.store)  # the same pool: already configured, unless that changes
        store = super().construct_snapshot_store()
        _create_tables(store.recorder, self.store)
        use_binary_inserts(store.recorder)
        return store

    def construct_transcoder(self) -> Transcoder:
        transcoder = LedgerTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        for transcoding in LEDGER_TRANSCODINGS:
            transcoder.register(transcoding)

    # ---- writing ----------------------------------------------------------------------------

    def apply(self, message: Message, source: Source) -> Decision:
        """Apply one message in its own transaction; a rule that fails raises."""
        return self.apply_batch([(message, source)])[0]

    def apply_batch(
        self,
        batch: Sequence[tuple[Message, Source]],
        tracking: Tracking | None = None,
        *,
        on_failures: OnFailures | None = None,
    ) -> list[Decision]:
        """Apply messages in order and record all their events (and `tracking`) in one transaction.

        The unit of failure is the message: one that makes a rule raise is left out (its member is
        decided again without it) and reported to `on_failures` before the commit, so the caller can
        dead-letter it first; without `on_failures` its error is raised and nothing is recorded.
        Raises IntegrityError without retrying when `tracking` is already recorded or, for a
        `Position`, when another writer moved that upstream position first.
        """
        if len(batch) > BATCH_SIZE_MAX:
            raise ValueError(f"a batch holds at most {BATCH_SIZE_MAX} messages, not {len(batch)}")
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                return self._apply_batch_once(batch, tracking, on_failures)
            except PositionConflictError:
                self._members.clear()
                raise
            except IntegrityError:
                self._members.clear()
                if attempt == CONFLICT_RETRIES or (tracking is not None and self._tracked(tracking)):
                    raise
            except BaseException:
                self._members.clear()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _apply_batch_once(
        self, batch: Sequence[tuple[Message, Source]], tracking: Tracking | None, on_failures: OnFailures | None
    ) -> list[Decision]:
        member_ids = list(dict.fromkeys(message.member_id for message, _ in batch))  # in first-seen order
        members = self._members_of(member_ids)
        decisions: list[Decision] = []
        failures: dict[int, Failure] = {}
        for index, (message, source) in enumerate(batch):
            try:
                decisions.append(self._decide(members, message, source))
            except Exception as error:  # a rule raised: this message fails, not its batch
                failures[index] = Failure(index, error)
                decisions.append(FAILED)
                self._decide_again_without(members, batch, index, failures, decisions)
        if failures:
            if on_failures is None:
                raise next(iter(failures.values())).error
            on_failures(list(failures.values()))
        self.record([members[member_id] for member_id in member_ids if member_id in members], tracking)
        return decisions

    def _decide(self, members: dict[str, Member], message: Message, source: Source) -> Decision:
        member = members.get(message.member_id)
        if member is None:
            member = members[message.member_id] = Member.start(message, source, self.program)
            if isinstance(message, Enrollment):
                return RECORDED
        return member.handle(message, source, self.program)

    def _decide_again_without(
        self,
        members: dict[str, Member],
        batch: Sequence[tuple[Message, Source]],
        failed: int,
        failures: dict[int, Failure],
        decisions: list[Decision],
    ) -> None:
        """The failed message may have changed its member half-way: reload the member as stored and
        apply its earlier messages of this batch again (the rules are pure, so they decide the same)."""
        member_id = batch[failed][0].member_id
        members.pop(member_id, None)
        self._members.pop(member_id, None)
        members.update(self._members_of([member_id]))
        for index in range(failed):
            message, source = batch[index]
            if message.member_id == member_id and index not in failures:
                decisions[index] = self._decide(members, message, source)

    def record(self, members: Sequence[Member], tracking: Tracking | None = None) -> None:
        """Write the members' new events, and the tracking record, in one transaction."""
        processing_event = ProcessingEvent[UUID](tracking=tracking)
        # What ProcessingEvent.collect_events does, without its runtime Protocol isinstance checks
        # (measured: ~9% of Kafka consume time).
        for member in members:
            processing_event.events.extend(member.collect_events())
            processing_event.aggregates[member.id] = member
        recordings = self._record(processing_event)
        for member in members:
            self._remember(member)
        self._take_snapshots(processing_event)
        self._notify(recordings)

    def sweep(self, as_of: datetime) -> tuple[int, int]:
        """Expire lots and re-evaluate tiers for every member: (members, members changed).

        `as_of` must lie in the program's range of accepted times, as message times do: the rules
        compute windows and retention periods from it."""
        earliest, latest = self.program.occurred_at_earliest, self.program.occurred_at_latest
        if not earliest <= as_of <= latest:
            raise OutOfRangeError(
                f"a sweep time must lie between {earliest.isoformat()} and {latest.isoformat()} (the program's range)"
            )
        seen = changed = 0
        page: list[Member] = []
        for member_id in self.member_ids():
            member = self._cached_member(member_id)
            if member is None:
                raise AssertionError(f"member {member_id} is listed but cannot be loaded")
            seen += 1
            if member.sweep(as_of, self.program):
                changed += 1
                page.append(member)
            if len(page) >= BATCH_SIZE_MAX:
                self.record(page)
                page = []
        if page:
            self.record(page)
        return seen, changed

    # ---- reading ----------------------------------------------------------------------------

    def member(self, member_id: str) -> Member | None:
        """The member's current state, or None if unknown."""
        try:
            return self.repository.get(member_uuid(member_id))
        except AggregateNotFoundError:
            return None

    def member_events(self, member_id: str) -> list[Member.Event]:
        """Every recorded event of one member, oldest first (no snapshot)."""
        return list(self.events.get(member_uuid(member_id)))  # type: ignore[arg-type]

    def member_ids(self) -> Iterator[str]:
        """Every enrolled member, in enrollment order."""
        topic = get_topic(Member.Enrolled)
        start = 1
        while True:
            page = self.recorder.select_notifications(start=start, limit=PAGE_SIZE, topics=[topic])
            for notification in page:
                enrolled = self.mapper.to_domain_event(notification)
                yield enrolled.member_id  # type: ignore[attr-defined]
            if len(page) < PAGE_SIZE:
                return
            start = page[-1].id + 1

    # ---- internals --------------------------------------------------------------------------

    def _members_of(self, member_ids: Sequence[str]) -> dict[str, Member]:
        """The existing members among `member_ids` (distinct): cached ones, and the others loaded once each, after
        one query has told which of them are stored at all (new members then cost no query)."""
        found: dict[str, Member] = {}
        uncached: dict[UUID, str] = {}
        for member_id in member_ids:
            member = self._from_cache(member_id)
            if member is not None:
                found[member_id] = member
            else:
                uncached[member_uuid(member_id)] = member_id
        for stored in maybe_stored(self.recorder, uncached):
            member = self.member(uncached[stored])
            if member is not None:
                found[member.member_id] = member
        return found

    def _cached_member(self, member_id: str) -> Member | None:
        return self._from_cache(member_id) or self.member(member_id)

    def _from_cache(self, member_id: str) -> Member | None:
        """The cached member, marked as most recently used; None if not cached."""
        member = self._members.get(member_id)
        if member is not None:
            self._members.move_to_end(member_id)
        return member

    def _remember(self, member: Member) -> None:
        self._members[member.member_id] = member
        self._members.move_to_end(member.member_id)
        while len(self._members) > MEMBER_CACHE_SIZE:
            self._members.popitem(last=False)

    def position(self, upstream: str) -> int | None:
        """The last recorded position of an upstream (e.g. a Kafka partition), or None."""
        return self.recorder.max_tracking_id(upstream)

    def _tracked(self, tracking: Tracking) -> bool:
        return self.recorder.has_tracking_id(tracking.application_name, tracking.notification_id)
