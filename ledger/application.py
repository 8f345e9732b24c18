"""The ledger application service: applies messages to members, one batch per transaction.

Built on the eventsourcing library's Application with a process recorder, so a
batch's events and (for Kafka) the upstream position it came from are written
in one transaction.

It is the one owner of the write path, which has two public steps: `decide` a batch (on the members in
memory: nothing is recorded) and `write` what was decided (one transaction). `apply_batch` does both, with
retries; the pipeline (ledger.pipeline) overlaps one batch's write with deciding the next, and so calls
`write`'s two halves itself: `prepare` (in memory, on the deciding thread) and `commit` (the transaction,
on a writer thread). Every ingest path, `consume`, `ingest` and any later one, goes through these.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import EventSourcingError, Snapshot
from eventsourcing.persistence import (
    EventStore,
    IntegrityError,
    JSONTranscoder,
    Mapper,
    ProcessRecorder,
    StoredEvent,
    Tracking,
    Transcoder,
)

from ledger.claims import claims_to_check, purchase_to_recall
from ledger.events import stored_topics
from ledger.invariants import LedgerInvariantError
from ledger.limits import BATCH_SIZE_MAX, OutOfRangeError
from ledger.member import Member, Source, claiming_event_classes, member_uuid
from ledger.micros import to_micros
from ledger.outcomes import FAILED, RECORDED, Decision, Failure
from ledger.program import Program
from ledger.recollection import BatchRecall, Notes, Stored, stored_purchases
from ledger.storage.backend import Backend
from ledger.storage.claim_index import CLAIM_ROWS, ClaimIndex, ClaimRow, Wanted, claim_index, claim_rows
from ledger.storage.compact import CompactMapper
from ledger.storage.ledger_time import (
    EXPECTED_LEDGER_TIME,
    LEDGER_TIME,
    as_time,
    guard_ledger_time,
    ledger_time_mark,
)
from ledger.storage.originators import StoredHistory, stored_histories, stored_uuid
from ledger.storage.pgbinary import use_binary_inserts
from ledger.storage.pgconnect import configure_pool, schema_lock
from ledger.storage.position_log import record_positions
from ledger.storage.positions import PositionConflictError, guard_positions
from ledger.storage.store import UNAVAILABLE_ERRORS, Store
from ledger.storage.transcoding import LEDGER_TRANSCODINGS, LedgerTranscoder
from schemas import Enrollment, Message

#: Members kept in memory between batches (the write side is the only writer per member).
MEMBER_CACHE_SIZE = 50_000
#: A member is snapshotted once this many events, or as many as its last snapshot held entries (open lots
#: and counting purchases), were recorded since: loading it replays at most about as many events as its
#: snapshot holds entries, and writing snapshots costs a bounded number of bytes per event (an event adds
#: at most two entries, so a snapshot holds at most three times the entries of the one before, per event
#: since), however large a member grows.
SNAPSHOT_EVENTS_MIN = 100
#: Times a batch is retried after another writer changed one of its members first (then it is recorded a
#: message per transaction, each retried as many times: `_apply_singly`).
CONFLICT_RETRIES = 3
#: Members loaded, decided and recorded together by a sweep.
SWEEP_BATCH_SIZE = 1_000
#: Rows per read when listing members.
PAGE_SIZE = 5_000
T = TypeVar("T")
#: Told which messages of a batch failed, before anything is recorded; raising records nothing.
OnFailures = Callable[[Sequence[Failure]], None]
#: What the rules raise when they cannot decide a message (an amount beyond exact arithmetic, a time beyond
#: the calendar): that message fails alone, and is dead-lettered. Anything else, from the store above all,
#: is not the message's fault and fails the whole batch (see `is_rule_verdict`).
RULE_ERRORS: tuple[type[Exception], ...] = (ValueError, ArithmeticError)
#: A snapshot the store does not take (unavailable, or one of that version already there) is taken later.
SNAPSHOT_WRITE_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, IntegrityError)


def is_rule_verdict(error: Exception) -> bool:
    """Is `error` a rule's verdict on one message, rather than a failure of the store or of the ledger?"""
    return isinstance(error, RULE_ERRORS) and not isinstance(error, EventSourcingError | LedgerInvariantError)


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """Items in order, `size` at a time, each batch without repeats."""
    batch: dict[str, None] = {}
    for item in items:
        batch[item] = None
        if len(batch) == size:
            yield list(batch)
            batch = {}
    if batch:
        yield list(batch)


def _is_member_event(event_class: type[Any]) -> bool:
    return issubclass(event_class, Member.Event)


def _create_tables(recorder: Any, store: Store) -> None:
    """CREATE TABLE IF NOT EXISTS, one process at a time (see `schema_lock`)."""
    create = getattr(recorder, "create_table", None)
    if create is None:
        return  # in-memory recorders have no tables
    with schema_lock(store):
        create()


class ReloadNeededError(Exception):
    """A rule failed while the stored state lagged behind memory: `forget` and decide the batch again."""


@dataclass(frozen=True, slots=True)
class DecidedBatch:
    """A batch decided in memory and not yet recorded: its members (with their new events), the decision on
    each message, and the messages a rule failed on."""

    members: list[Member]
    decisions: list[Decision]
    failures: list[Failure]
    #: What the batch's events claimed, for the batches decided while it is written.
    notes: Notes | None = None

    def report_failures(self, on_failures: OnFailures | None) -> None:
        """Tell `on_failures` (before anything is recorded); without it, raise the first failure's error."""
        if not self.failures:
            return
        if on_failures is None:
            raise self.failures[0].error
        on_failures(self.failures)


@dataclass(frozen=True, slots=True)
class Applied:
    """What one message did (`LedgerApplication.apply_one`): the decision, the member as it stands after it
    (None when the message failed on a new member), the log position of its last event (None when nothing
    was recorded: a duplicate, a failure) and, when a rule failed on it, that failure."""

    decision: Decision
    member: Member | None
    position: int | None
    failure: Failure | None = None


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """One transaction's worth: the events (encoded) and the tracking record (`LedgerApplication.prepare`)."""

    processing_event: ProcessingEvent[UUID]
    stored_events: list[StoredEvent]
    #: Snapshots to record once the events are committed: (member id, snapshot, entries of its state).
    snapshots: list[tuple[str, StoredEvent, int]]
    notes: Notes | None


class LedgerApplication(Application[UUID]):
    """The system of record for points."""

    name = "Ledger"
    #: Snapshots are taken by `prepare` (see SNAPSHOT_EVENTS_MIN), not at the library's fixed intervals.
    is_snapshotting_enabled = True

    def __init__(self, store: Store, program: Program) -> None:
        self.program = program
        self.store = store
        #: Which database the store is (chosen from its URL): the storage code that differs by it is told.
        self.backend = Backend.of(store)
        self._members: OrderedDict[str, Member] = OrderedDict()
        #: Each cached member's latest snapshot: its version, and the entries its state held.
        self._snapshot_versions: dict[str, tuple[int, int]] = {}
        #: The notes of writes not yet known to be committed, oldest first (see ledger.recollection).
        self._in_flight: list[Notes] = []
        self._ledger_time_micros: int | None = None
        self._ledger_time: datetime | None = None
        self._ledger_time_known = False
        # Tables are created here (see _create_tables), not by the library's factory.
        super().__init__(env={**store.env, "CREATE_TABLE": "no"})
        self.recorder: ProcessRecorder
        topics = [topic for event_class in claiming_event_classes() for topic in stored_topics(event_class)]
        self.claims.ensure(self.mapper.to_domain_event, topics)

    def construct_recorder(self) -> ProcessRecorder:
        configure_pool(self.factory, self.store)  # before the first connection: TLS, password, PG* fallbacks
        recorder = self.factory.process_recorder()
        _create_tables(recorder, self.store)
        use_binary_inserts(self.backend, recorder)
        guard_positions(self.backend, recorder)
        guard_ledger_time(self.backend, recorder)
        record_positions(recorder, self.store)
        self.claims: ClaimIndex = claim_index(self.backend, recorder, lambda: schema_lock(self.store))
        self.claims.install()
        return recorder

    def construct_snapshot_store(self) -> EventStore[UUID]:
        configure_pool(self.factory, self.store)  # the same pool: already configured, unless that changes
        store = super().construct_snapshot_store()
        _create_tables(store.recorder, self.store)
        use_binary_inserts(self.backend, store.recorder)
        return store

    def construct_mapper(self) -> Mapper[UUID]:
        """The library's mapper, storing member events in the compact format (ledger.storage.compact)."""
        return CompactMapper(transcoder=self.construct_transcoder(), compact=_is_member_event)

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

        def final(error: IntegrityError) -> bool:
            return isinstance(error, PositionConflictError) or (tracking is not None and self._tracked(tracking))

        try:
            return self._retrying(lambda: self._apply_batch_once(batch, tracking, on_failures), final)
        except IntegrityError as error:
            if len(batch) == 1 or final(error):
                raise
        return self._apply_singly(batch, tracking, on_failures, final)

    def _apply_singly(
        self,
        batch: Sequence[tuple[Message, Source]],
        tracking: Tracking | None,
        on_failures: OnFailures | None,
        final: Callable[[IntegrityError], bool],
    ) -> list[Decision]:
        """A batch that lost to other writers of its members every time (the API posting to the same members
        while `consume` records them): a message per transaction, each retried on its own, `tracking` with the
        last. Each message's window for a conflict is then one message's, not the batch's. Recording the
        messages before the last without `tracking` keeps exactly-once: each claims its event id, so a
        redelivery after a crash half-way finds the ones recorded and counts them as duplicates."""
        decisions: list[Decision] = []
        for index, item in enumerate(batch):
            last = index == len(batch) - 1

            def reported(failures: Sequence[Failure], at: int = index) -> None:
                if on_failures is None:
                    raise failures[0].error
                on_failures([Failure(at, failure.error) for failure in failures])

            single = partial(self._apply_batch_once, [item], tracking if last else None, reported)
            decisions += self._retrying(single, final if last else lambda _: False)
        return decisions

    def apply_one(self, message: Message, source: Source) -> Applied:
        """Decide one message and record it in its own transaction, retried like `apply_batch` when another
        writer changed its member first (optimistic concurrency: the member's next version is taken once).
        A rule that fails on it records nothing and comes back as the `failure`, not raised."""

        def once() -> Applied:
            decided = self.decide([(message, source)])
            member = decided.members[0] if decided.members else None
            if decided.failures:
                return Applied(decided.decisions[0], member, None, decided.failures[0])
            positions = self.commit(self.prepare(decided))
            return Applied(decided.decisions[0], member, max(positions) if positions else None)

        return self._retrying(once)

    def _retrying(self, once: Callable[[], T], final: Callable[[IntegrityError], bool] = lambda _: False) -> T:
        """`once()`, tried again (up to CONFLICT_RETRIES times) after another writer changed what it decided on,
        unless `final` says that conflict cannot pass. Any failure first forgets what memory may hold of it."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                return once()
            except IntegrityError as error:
                self.forget()
                if attempt == CONFLICT_RETRIES or final(error):
                    raise
            except BaseException:
                self.forget()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def forget(self) -> None:
        """Drop what a failed batch may have changed in memory: cached members, what writes in flight claimed,
        and the ledger's time (a sweep may have moved it: `LedgerTimeMovedError`). Call it after a write failed
        and before deciding again: what memory holds may be a future the store never took."""
        self._members.clear()
        self._snapshot_versions.clear()
        self._in_flight.clear()
        self._ledger_time_known = False

    def _apply_batch_once(
        self, batch: Sequence[tuple[Message, Source]], tracking: Tracking | None, on_failures: OnFailures | None
    ) -> list[Decision]:
        decided = self.decide(batch)
        decided.report_failures(on_failures)
        self.write(decided, tracking)
        return decided.decisions

    def decide(self, batch: Sequence[tuple[Message, Source]], *, reload_allowed: bool = True) -> DecidedBatch:
        """The write path's first step: decide every message of `batch` on the members in memory; records
        nothing (so a caller may dead-letter the messages that failed before anything is written).

        What the store must say (the members, the ledger's time, the ids and purchases the messages name) is
        read first; a failure there fails the batch. Deciding is then pure, and a message whose rules raise
        (`is_rule_verdict`) fails alone: its member is reloaded as stored and decided again without it.
        Without `reload_allowed` (the stored state may lag behind memory) that raises `ReloadNeededError`
        instead, after which the caller must `forget` and decide again. Any other error is raised: a broken
        invariant stops the ledger, and nothing of the batch is recorded."""
        member_ids = list(dict.fromkeys(message.member_id for message, _ in batch))  # in first-seen order
        members = self._members_of(member_ids)
        ledger_time = self.ledger_time()
        recall = self._recall(batch)
        decisions: list[Decision] = []
        failures: dict[int, Failure] = {}
        for index, (message, source) in enumerate(batch):
            try:
                decisions.append(self._decide(members, recall, message, source, ledger_time))
            except Exception as error:
                if not is_rule_verdict(error):
                    raise
                if not reload_allowed:
                    raise ReloadNeededError from error
                failures[index] = Failure(index, error)
                decisions.append(FAILED)
                self._decide_again_without(
                    members, recall, batch, index, failures=failures, decisions=decisions, ledger_time=ledger_time
                )
        chosen = [members[member_id] for member_id in member_ids if member_id in members]
        return DecidedBatch(chosen, decisions, list(failures.values()), recall.notes)

    def _recall(self, batch: Sequence[tuple[Message, Source]]) -> BatchRecall:
        """What the store recalls of the ids and purchases `batch` names, under the writes still in flight.

        The in-flight notes are taken before the store is asked: a write that commits in between is then in
        one or the other (a write leaves the in-flight list only once committed)."""
        in_flight = list(self._in_flight)
        member_ids: dict[UUID, str] = {}
        wanted: set[Wanted] = set()
        purchases: set[tuple[UUID, str]] = set()
        for message, _ in batch:
            originator_id = member_uuid(message.member_id)
            member_ids[originator_id] = message.member_id
            wanted.update((originator_id, claim.kind, claim.key) for claim in claims_to_check(message))
            transaction_id = purchase_to_recall(message)
            if transaction_id is not None:
                purchases.add((originator_id, transaction_id))
        claimed: dict[str, set[tuple[str, str]]] = {}
        for originator_id, kind, key in self.claims.find(wanted):
            claimed.setdefault(member_ids[originator_id], set()).add((kind, key))
        events = (
            (member_ids[stored_uuid(stored.originator_id)], cast(Member.Event, self.mapper.to_domain_event(stored)))
            for stored in self.claims.purchase_events(purchases)
        )
        return BatchRecall(Stored(claimed, stored_purchases(events)), in_flight)

    def _decide(
        self,
        members: dict[str, Member],
        recall: BatchRecall,
        message: Message,
        source: Source,
        ledger_time: datetime | None,
    ) -> Decision:
        """One message, on the members and what `recall` holds: pure, nothing read from the store."""
        member = members.get(message.member_id)
        if member is None:
            member = members[message.member_id] = Member.start(message, source, self.program, ledger_time)
            if isinstance(message, Enrollment):
                recall.notes.note(message.member_id, member.pending_since(0), recall.of(message.member_id))
                return RECORDED
        pending = member.pending_count()
        member_recall = recall.of(message.member_id)
        decision = member.handle(message, source, self.program, member_recall, ledger_time)
        recall.notes.note(message.member_id, member.pending_since(pending), member_recall)
        return decision

    def _decide_again_without(
        self,
        members: dict[str, Member],
        recall: BatchRecall,
        batch: Sequence[tuple[Message, Source]],
        failed: int,
        *,
        failures: dict[int, Failure],
        decisions: list[Decision],
        ledger_time: datetime | None,
    ) -> None:
        """The failed message may have changed its member half-way: reload the member as stored and
        apply its earlier messages of this batch again (the rules are pure, so they decide the same)."""
        member_id = batch[failed][0].member_id
        members.pop(member_id, None)
        self._members.pop(member_id, None)
        recall.forget(member_id)
        members.update(self._members_of([member_id]))
        for index in range(failed):
            message, source = batch[index]
            if message.member_id == member_id and index not in failures:
                decisions[index] = self._decide(members, recall, message, source, ledger_time)

    def write(self, decided: DecidedBatch, tracking: Tracking | None = None) -> Sequence[int]:
        """The write path's second step: record what `decide` decided, the ids its events claim and `tracking`
        in one transaction (`prepare`, then `commit`). It fails with `LedgerTimeMovedError` if a sweep moved
        the ledger's time since the batch was decided, and with IntegrityError if `tracking` is recorded
        already or another writer changed one of its members first: then `forget` and decide again. Returns
        the log positions of the events recorded."""
        return self.commit(self.prepare(decided, tracking))

    def prepare(self, decided: DecidedBatch, tracking: Tracking | None = None) -> PreparedWrite:
        """`write`'s first half, on the deciding thread: what one transaction will record, with its events
        encoded; the members are kept in memory as decided, so that the next batch can be decided on them
        before this one commits (ledger.pipeline), and what the batch claimed is kept in flight until then."""
        return self._collect(decided.members, tracking, decided.notes)

    def _collect(self, members: Sequence[Member], tracking: Tracking | None, notes: Notes | None) -> PreparedWrite:
        """Take the members' new events for one write, encoded, with the ids they claim and the snapshots now
        due; keep the members in memory as decided, and `notes` in flight until the write commits."""
        processing_event = ProcessingEvent[UUID](tracking=tracking)
        rows: list[ClaimRow] = []
        snapshots: list[tuple[str, StoredEvent, int]] = []
        # What ProcessingEvent.collect_events does, without its runtime Protocol isinstance checks
        # (measured: ~9% of Kafka consume time).
        for member in members:
            events = member.collect_events()
            processing_event.events.extend(events)
            processing_event.aggregates[member.id] = member
            for event in events:
                rows.extend(claim_rows(member.id, event.originator_version, event.claims()))  # type: ignore[attr-defined]
            self._remember(member)
            if self._snapshot_due(member):
                stored = self.snapshots_mapper.to_stored_event(Snapshot.take(member))
                snapshots.append((member.member_id, stored, member.state_entries()))
        processing_event.saved_kwargs[EXPECTED_LEDGER_TIME] = self._ledger_time_micros
        processing_event.saved_kwargs[CLAIM_ROWS] = rows
        stored_events = list(map(self.mapper.to_stored_event, processing_event.events))
        if notes is not None:
            self._in_flight.append(notes)
        return PreparedWrite(processing_event, stored_events, snapshots, notes)

    def commit(self, prepared: PreparedWrite) -> Sequence[int]:
        """`write`'s second half: one transaction for the events, their claims and the tracking record; then
        the snapshots now due. It touches no member, so it may run on a writer thread while the next batch is
        decided (ledger.pipeline); writes commit in the order they were prepared. (What the library's `_record`
        does, minus building recordings that nothing here reads.)"""
        processing_event = prepared.processing_event
        positions = self.recorder.insert_events(
            prepared.stored_events, tracking=processing_event.tracking, **processing_event.saved_kwargs
        )
        if prepared.notes is not None:
            self._in_flight.remove(prepared.notes)
        self._write_snapshots(prepared.snapshots)
        return positions or ()

    @property
    def snapshots_mapper(self) -> Mapper[UUID]:
        if self.snapshots is None:
            raise LedgerInvariantError("the ledger runs without its snapshot store")
        return self.snapshots.mapper

    def _snapshot_due(self, member: Member) -> bool:
        version, entries = self._snapshot_versions.get(member.member_id, (0, 0))
        return member.version - version >= max(SNAPSHOT_EVENTS_MIN, entries)

    def _write_snapshots(self, snapshots: list[tuple[str, StoredEvent, int]]) -> None:
        """Record snapshots after their events committed. A snapshot only saves loading time: one the store
        does not take now is taken at the member's next write (it stays due), and the batch stands."""
        if not snapshots or self.snapshots is None:
            return
        try:
            self.snapshots.recorder.insert_events([stored for _, stored, _ in snapshots])
        except SNAPSHOT_WRITE_ERRORS:
            return
        for member_id, stored, entries in snapshots:
            self._snapshot_versions[member_id] = (stored.originator_version, entries)

    def forget_members(self) -> None:
        """Drop the cached members: a job that meets each member once (a file's rows) only pays memory for them.
        (What writes still in flight claimed is kept: it is not in the store yet.)"""
        self._members.clear()
        self._snapshot_versions.clear()

    def ledger_time(self) -> datetime | None:
        """The ledger's own time, the last sweep's (None before the first); nothing is effective before it."""
        if not self._ledger_time_known:
            self._ledger_time_micros = self.recorder.max_tracking_id(LEDGER_TIME)
            self._ledger_time = as_time(self._ledger_time_micros)
            self._ledger_time_known = True
        return self._ledger_time

    def sweep(self, as_of: datetime, member_ids: Iterable[str] | None = None) -> tuple[int, int]:
        """Expire lots and re-evaluate tiers at `as_of`: (members visited, members changed).

        First the ledger's time moves to `as_of` (`advance_ledger_time`). Then each of `member_ids` (every
        member if None) is visited, in batches, and the changed ones recorded. Visiting only the members
        with something due by `as_of` gives the same ledger as visiting everyone: the others would not
        change. Find them after the ledger's time has moved, so that no change decided before it is missed.
        """
        self.advance_ledger_time(as_of)
        seen = changed = 0
        for batch in _batched(self.member_ids() if member_ids is None else member_ids, SWEEP_BATCH_SIZE):
            seen += len(batch)
            changed += self._sweep_batch(batch, as_of)
        return seen, changed

    def _sweep_batch(self, member_ids: list[str], as_of: datetime) -> int:
        """Sweep these members and record the changed ones in one transaction; how many changed. A member
        that another writer changed meanwhile is loaded again and the batch decided again."""

        def once() -> int:
            members = self._members_of(member_ids)
            unknown = [member_id for member_id in member_ids if member_id not in members]
            if unknown:
                raise LedgerInvariantError(f"member {unknown[0]} is listed but cannot be loaded")
            changed = [member for member in members.values() if member.sweep(as_of, self.program)]
            if changed:
                self.commit(self._collect(changed, None, None))
            for member_id in member_ids:  # the members left unchanged are not cached: nor is their snapshot
                if member_id not in self._members:
                    self._snapshot_versions.pop(member_id, None)
            return len(changed)

        return self._retrying(once)

    def advance_ledger_time(self, as_of: datetime) -> None:
        """Record `as_of` as the ledger's time, unless it already is that late: from then on nothing is
        recorded effective before it, for any member.

        `as_of` must lie in the program's range of accepted times, as message times do: the rules
        compute windows and retention periods from it."""
        earliest, latest = self.program.occurred_at_earliest, self.program.occurred_at_latest
        if not earliest <= as_of <= latest:
            raise OutOfRangeError(
                f"a sweep time must lie between {earliest.isoformat()} and {latest.isoformat()} (the program's range)"
            )

        def once() -> None:  # another sweep may move it first: then look again
            current = self.ledger_time()
            if current is not None and current >= as_of:
                return
            expected = {EXPECTED_LEDGER_TIME: self._ledger_time_micros}
            self.recorder.insert_events([], tracking=ledger_time_mark(as_of), **expected)
            self._ledger_time_micros, self._ledger_time = to_micros(as_of), as_of

        self._retrying(once)

    # ---- reading ----------------------------------------------------------------------------

    def member(self, member_id: str) -> Member | None:
        """The member's current state, or None if unknown."""
        try:
            return self.repository.get(member_uuid(member_id))
        except AggregateNotFoundError:
            return None

    def claimed(self, member_id: str, kind: str, key: str) -> bool:
        """Has an event of this member claimed this id (ledger.claims): for an event id, was a message with it
        recorded (a redelivery would be a duplicate); for an adjustment id, was that adjustment made?"""
        wanted = (member_uuid(member_id), kind, key)
        return wanted in self.claims.find([wanted])

    def member_events(self, member_id: str) -> list[Member.Event]:
        """Every recorded event of one member, oldest first (no snapshot)."""
        return list(self.events.get(member_uuid(member_id)))  # type: ignore[arg-type]

    def member_ids(self) -> Iterator[str]:
        """Every enrolled member, in enrollment order."""
        topics = list(stored_topics(Member.Enrolled))
        start = 1
        while True:
            page = self.recorder.select_notifications(start=start, limit=PAGE_SIZE, topics=topics)
            for notification in page:
                enrolled = self.mapper.to_domain_event(notification)
                yield enrolled.member_id  # type: ignore[attr-defined]
            if len(page) < PAGE_SIZE:
                return
            start = page[-1].id + 1

    # ---- internals --------------------------------------------------------------------------

    def _members_of(self, member_ids: Sequence[str]) -> dict[str, Member]:
        """The existing members among `member_ids` (distinct): cached ones, and the others read together in
        two queries (`stored_histories`: new members then cost nothing more)."""
        found: dict[str, Member] = {}
        uncached: dict[UUID, str] = {}
        for member_id in member_ids:
            member = self._from_cache(member_id)
            if member is not None:
                found[member_id] = member
            else:
                uncached[member_uuid(member_id)] = member_id
        if not uncached:
            return found
        snapshots = self.snapshots.recorder if self.snapshots else None
        histories = stored_histories(self.backend, self.recorder, snapshots, uncached)
        if histories is None:  # no SQL to batch with: one by one
            loaded = (self.member(member_id) for member_id in uncached.values())
            found.update((member.member_id, member) for member in loaded if member is not None)
            return found
        for history in histories.values():
            member = self._projected(history)
            found[member.member_id] = member
            self._snapshot_versions[member.member_id] = (history.after, member.state_entries())
        return found

    def _projected(self, history: StoredHistory) -> Member:
        """A member from its latest snapshot and the events after it, as the library's repository does."""
        member: Any = None
        if history.snapshot is not None and self.snapshots is not None:
            member = self.snapshots.mapper.to_domain_event(history.snapshot).mutate(None)  # type: ignore[attr-defined]
        for stored in history.events:
            member = self.mapper.to_domain_event(stored).mutate(member)  # type: ignore[attr-defined]
        if not isinstance(member, Member):
            raise LedgerInvariantError(f"stored history of {history!r:.200} does not make a member")
        return member

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
            evicted, _ = self._members.popitem(last=False)
            self._snapshot_versions.pop(evicted, None)

    def position(self, upstream: str) -> int | None:
        """The last recorded position of an upstream (e.g. a Kafka partition), or None."""
        return self.recorder.max_tracking_id(upstream)

    def _tracked(self, tracking: Tracking) -> bool:
        return self.recorder.has_tracking_id(tracking.application_name, tracking.notification_id)
