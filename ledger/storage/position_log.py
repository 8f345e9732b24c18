"""An append-only, hash-chained record of every upstream position the ledger records.

The tracking table holds only each upstream's *last* position (a Kafka partition's offset, the ledger's time),
and a batch of only invalid or duplicate messages leaves no event behind: edit that row and the consumer skips
(or re-reads) messages with nothing in the log to say so. So every tracking record the ledger writes also
appends a row here, in the same transaction: the upstream, the position, the one it continues from, when, and
a link of a per-upstream chain (ledger.storage.chain: SHA-256, or HMAC-SHA-256 when the writer has the chain key).
`verify` then checks that each upstream's tracking position is the last one recorded here and that the chain
holds (`check_positions`). Without the key, a database writer who edits the tracking row can also append a
matching record; with it, they cannot.

A ledger that had tracking rows before this record existed gets one "adopted" record per upstream, at the
position found, when the table is created: positions before it are taken as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from eventsourcing.persistence import Tracking

from ledger.eventsourcing_adapter import Insert, wrap_insert_tracking
from ledger.invariants import LedgerInvariantError
from ledger.micros import to_micros
from ledger.storage.backend import Backend, OnBackend, unsupported
from ledger.storage.chain import Chain, mismatch
from ledger.storage.pgconnect import schema_lock
from ledger.storage.store import Store

#: The chain positions were recorded in before the ledger had a key.
UNKEYED_CHAIN = Chain()
#: The record's table (the ledger's own tables on SQLite have fixed names: this one does not clash).
POSITION_LOG_TABLE = "ledger_position_log"
#: The hash each upstream's chain starts from.
GENESIS = "0" * 64
#: The library's own record of its table layout, not an upstream.
MIGRATION = "__migration__"
#: Tracking rows that hold no upstream position: the library's table layout, and the ledger's id
#: (ledger.storage.identity), which is written once and never advances.
NOT_POSITIONS = frozenset({MIGRATION, "ledger-id"})
#: Records read per page while checking.
CHECK_PAGE = 5_000
#: Below every position (Kafka offsets and the ledger's time are never negative).
_BEFORE_ALL = -(2**63)
BATCH = "batch"
ADOPTED = "adopted"


class PositionLogError(LedgerInvariantError):
    """A tracking position that goes back to one already recorded: the tracking table was changed outside the
    ledger. Nothing of the batch is recorded."""


@dataclass(frozen=True, slots=True)
class PositionRecord:
    upstream: str
    position: int
    #: The position the record before ended at (None: the first).
    previous: int | None
    recorded_at: int
    #: BATCH, or ADOPTED (found when the record began).
    kind: str
    #: The chain's mode (ledger.storage.chain) the link was made in.
    chain: str

    def link(self, previous_hash: str, chain: Chain) -> str:
        fields = [previous_hash, self.upstream, self.position, self.previous, self.recorded_at, self.kind, self.chain]
        return chain.hash(orjson.dumps(fields))


def record_positions(recorder: Any, store: Store) -> None:
    """Make the recorder append a PositionRecord, chained with `store.chain`, to every tracking record it writes
    (after the position guard: install this last). Creates the table, adopting the positions found."""
    backend = Backend.of(store)
    if backend is Backend.MEMORY:
        return  # nothing outlives the process
    if backend not in {Backend.POSTGRES, Backend.SQLITE}:
        raise unsupported("position log", backend)
    table = _Table(recorder, backend is Backend.POSTGRES)
    if not table.exists(recorder):  # a read: processes starting beside a writer do not wait for its lock
        with schema_lock(store), recorder.datastore.transaction(commit=True) as cursor:
            table.create(cursor, store.chain)

    def recorded(insert_tracking: Insert) -> Insert:
        def insert_recorded(cursor: Any, tracking: Tracking) -> None:
            insert_tracking(cursor, tracking)
            if tracking.application_name != MIGRATION:
                table.append(cursor, store.chain, tracking.application_name, tracking.notification_id, BATCH)

        return insert_recorded

    wrap_insert_tracking(recorder, recorded)


def check_positions(ledger: OnBackend, chain: Chain, skip: Callable[[str], bool]) -> Iterator[tuple[str, str]]:
    """(upstream, what is wrong) for every upstream of `ledger` (the ledger application, on SQLite or
    PostgreSQL) whose tracking position is not the last recorded one, or whose records do not chain; upstreams
    that `skip` names (other tables' rows sharing SQLite's) are left out."""
    recorder = ledger.recorder
    table = _Table(recorder, ledger.backend is Backend.POSTGRES)
    with recorder.datastore.transaction(commit=False) as cursor:
        tracked = {name: int(at) for name, at in table.rows(cursor, f"SELECT application_name, notification_id "
                                                             f"FROM {table.tracking} WHERE application_name <> ?",
                                                             (MIGRATION,))}  # fmt: skip
        logged = {name for (name,) in table.rows(cursor, f"SELECT DISTINCT upstream FROM {table.name}")}
    for upstream in sorted(name for name in tracked.keys() | logged if not skip(name) and name not in NOT_POSITIONS):
        yield from _check_upstream(table, recorder, chain, upstream, tracked.get(upstream))


def _check_upstream(
    table: _Table, recorder: Any, chain: Chain, upstream: str, tracked: int | None
) -> Iterator[tuple[str, str]]:
    previous_hash, last = GENESIS, None
    mode_told = keyed_seen = False
    for record, stored_hash in table.records(recorder, upstream):
        if record.previous != last:
            yield (
                upstream,
                f"the record at {record.position} continues from {record.previous}, the one before ends at {last}",
            )
        link_chain = chain
        if record.chain == UNKEYED_CHAIN.mode and chain.keyed:
            # Written before the ledger had its key: its link is checked as the unkeyed chain it is. Only the
            # switch one way is a ledger's history; unkeyed after keyed is a record written without the key.
            link_chain = UNKEYED_CHAIN
            if keyed_seen:
                yield upstream, f"the record at {record.position} is unkeyed, after keyed ones"
        keyed_seen = keyed_seen or record.chain != UNKEYED_CHAIN.mode
        problem = mismatch(f"the record at {record.position}", record.chain, link_chain)
        if problem is not None:
            if not mode_told:
                yield upstream, f"{problem}: its links cannot be checked"
            mode_told = True
        elif record.link(previous_hash, link_chain) != stored_hash:
            yield upstream, f"the record at {record.position} does not hash as it was written"
        previous_hash, last = stored_hash, record.position
    if tracked is None:
        yield upstream, f"batches are recorded up to {last}, but the tracking table has no position"
    elif last is None:
        yield upstream, f"the tracking table says {tracked}, but no batch was ever recorded for it"
    elif tracked != last:
        yield upstream, f"the tracking table says {tracked}, but the last recorded batch ends at {last}"


class _Table:
    """The record's table on one recorder's database (PostgreSQL or SQLite)."""

    def __init__(self, recorder: Any, on_postgres: bool) -> None:
        self.on_postgres = on_postgres
        schema = f"{recorder.datastore.schema}." if on_postgres else ""
        self.name = schema + POSITION_LOG_TABLE
        self.tracking = schema + (recorder.tracking_table_name if on_postgres else "tracking")

    def execute(self, cursor: Any, statement: str, params: tuple[Any, ...] = ()) -> None:
        cursor.execute(statement.replace("?", "%s") if self.on_postgres else statement, params)

    def rows(self, cursor: Any, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self.execute(cursor, statement, params)
        return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in cursor.fetchall()]

    def exists(self, recorder: Any) -> bool:
        with recorder.datastore.transaction(commit=False) as cursor:
            if self.on_postgres:
                return bool(self.rows(cursor, "SELECT to_regclass(?) IS NOT NULL", (self.name,))[0][0])
            found = self.rows(cursor, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.name,))
            return bool(found)

    def create(self, cursor: Any, chain: Chain) -> None:
        """Create the table and adopt each position the tracking table holds (an older ledger). The CREATE comes
        first: on SQLite it takes the write lock, waiting for it, before anything is read."""
        self.execute(
            cursor,
            f"CREATE TABLE IF NOT EXISTS {self.name} (upstream TEXT NOT NULL, position BIGINT NOT NULL, "
            "previous BIGINT, recorded_at BIGINT NOT NULL, kind TEXT NOT NULL, chain TEXT NOT NULL, "
            "hash TEXT NOT NULL, PRIMARY KEY (upstream, position))",
        )
        if self.rows(cursor, f"SELECT 1 FROM {self.name} LIMIT 1"):
            return
        found = self.rows(
            cursor,
            f"SELECT application_name, notification_id FROM {self.tracking} WHERE application_name <> ? "
            "ORDER BY application_name",
            (MIGRATION,),
        )
        for upstream, position in found:
            self.append(cursor, chain, upstream, int(position), ADOPTED)

    def append(self, cursor: Any, chain: Chain, upstream: str, position: int, kind: str) -> None:
        """Append `upstream`'s record at `position`, linked to its last one, in the caller's transaction."""
        last = self.rows(
            cursor, f"SELECT position, hash FROM {self.name} WHERE upstream = ? ORDER BY position DESC LIMIT 1",
            (upstream,),
        )  # fmt: skip
        previous, previous_hash = (None, GENESIS) if not last else (int(last[0][0]), str(last[0][1]))
        if previous is not None and position <= previous:
            raise PositionLogError(
                f"{upstream}: position {position} is not past {previous}, already recorded; the tracking table "
                "was changed outside the ledger (run `verify`)"
            )
        record = PositionRecord(upstream, position, previous, to_micros(datetime.now(UTC)), kind, chain.mode)
        self.execute(
            cursor,
            f"INSERT INTO {self.name} (upstream, position, previous, recorded_at, kind, chain, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (upstream, position, previous, record.recorded_at, kind, chain.mode, record.link(previous_hash, chain)),
        )

    def records(self, recorder: Any, upstream: str) -> Iterator[tuple[PositionRecord, str]]:
        """`upstream`'s records in position order, with their stored hashes, read a page at a time."""
        after = _BEFORE_ALL
        while True:
            with recorder.datastore.transaction(commit=False) as cursor:
                page = self.rows(
                    cursor,
                    f"SELECT position, previous, recorded_at, kind, chain, hash FROM {self.name} "
                    "WHERE upstream = ? AND position > ? ORDER BY position LIMIT ?",
                    (upstream, after, CHECK_PAGE),
                )
            for position, previous, recorded_at, kind, chain, stored_hash in page:
                record = PositionRecord(
                    upstream, int(position), None if previous is None else int(previous), int(recorded_at), kind, chain
                )
                yield record, str(stored_hash)
            if len(page) < CHECK_PAGE:
                return
            after = int(page[-1][0])
