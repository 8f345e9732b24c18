"""The claim index: every id a member's events used, in a table beside the events, written with them.

`ledger.claims` says why the ids are not kept in the member's state. Here is where they are kept: the table
`ledger_claims`, one row per claimed id, its primary key (member, kind, id). A batch's rows are inserted in
the transaction that records its events (under the events table's lock, before the events themselves: see
`install`), so the insert itself refuses an id claimed twice
(the batch then fails as a whole with IntegrityError and is decided again). Deciding a batch asks the
index once for every id its messages carry, and once for the purchases its refunds name (the rows of a
refund also name their purchase, `ref`, with an index of its own).

A ledger written before the index existed gets it filled from its whole log once, in the transaction that
creates the table, with the events table locked against writers (`ensure`): about the time a rebuild
takes to read the log.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from psycopg.sql import SQL, Composed, Identifier

from ledger.claims import Claim, Kind
from ledger.eventsourcing_adapter import Insert, lock_events_table, memory_lock, wrap_insert_events
from ledger.storage.backend import Backend, unsupported
from ledger.storage.originators import SQLITE_IDS_PER_QUERY_MAX, stored_uuid

#: The table's name on every store.
TABLE = "ledger_claims"
#: The keyword a write passes (through the library's `saved_kwargs`) with its rows.
CLAIM_ROWS = "claim_rows"
#: Stored events read per page while filling the index of an older ledger.
BACKFILL_PAGE_SIZE = 5_000

#: (member's aggregate id, kind, id, the claiming event's version, the purchase a refund belongs to)
ClaimRow = tuple[UUID, str, str, int, str | None]
#: Which member asks about which id.
Wanted = tuple[UUID, str, str]
#: One of a member's rows: (kind code, id, the claiming event's version).
IndexedClaim = tuple[str, str, int]


def claim_rows(originator_id: UUID, version: int, claims: Iterable[Claim]) -> list[ClaimRow]:
    return [(originator_id, claim.kind, claim.key, version, claim.purchase) for claim in claims]


#: Decodes a stored event into its domain event (the application's mapper).
Decoder = Callable[[StoredEvent], Any]


class ClaimIndex(Protocol):
    """One store's claim index."""

    def ensure(self, decode: Decoder, claiming_topics: Sequence[str]) -> None:
        """Create the table if missing, filled from the events of `claiming_topics` already recorded."""

    def install(self) -> None:
        """Make the recorder insert a write's `CLAIM_ROWS` in the transaction that records its events."""

    def find(self, wanted: Collection[Wanted]) -> set[Wanted]:
        """Those of `wanted` that are claimed."""

    def purchase_events(self, wanted: Collection[tuple[UUID, str]]) -> list[StoredEvent]:
        """The stored events (purchase, then its refunds) of each (member, transaction id) in `wanted`, in
        member and version order."""

    def rows_of(self, originator_ids: Collection[UUID]) -> dict[UUID, set[IndexedClaim]]:
        """What the index holds of each of these members (for `verify`)."""


def claim_index(backend: Backend, recorder: Any, schema_lock: Callable[[], AbstractContextManager[None]]) -> ClaimIndex:
    """The claim index of the `backend` store `recorder` writes to; `schema_lock` serialises table creation."""
    if backend is Backend.POSTGRES:
        return _PostgresClaims(recorder, schema_lock)
    if backend is Backend.SQLITE:
        return _SQLiteClaims(recorder)
    if backend is Backend.MEMORY:
        return _MemoryClaims(recorder)
    raise unsupported("claim index", backend)


def _backfill_rows(rows: Iterable[tuple[Any, int, str, bytes]], to_uuid: Callable[[Any], UUID],
                   decode: Decoder) -> Iterator[ClaimRow]:  # fmt: skip
    for originator_id, version, topic, state in rows:
        member_id = to_uuid(originator_id)
        event = decode(StoredEvent(member_id, version, topic, bytes(state)))
        yield from claim_rows(member_id, version, event.claims())


def _pages(rows: Iterator[ClaimRow], size: int) -> Iterator[list[ClaimRow]]:
    page: list[ClaimRow] = []
    for row in rows:
        page.append(row)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


class _PostgresClaims:
    """Its statements take their arrays as binary parameters (`%b`): psycopg then dumps a list of UUIDs without a
    Python call per element (measured: a batch's lookup 5.8 ms against 10.6 ms as text)."""

    def __init__(self, recorder: Any, schema_lock: Callable[[], AbstractContextManager[None]]) -> None:
        self.recorder = recorder
        self.schema_lock = schema_lock
        datastore = recorder.datastore
        self.text_ids = datastore.originator_id_type == "text"
        self.id_type = SQL("text" if self.text_ids else "uuid")
        self.table = Identifier(datastore.schema, TABLE)
        self.events = Identifier(datastore.schema, recorder.events_table_name)
        self.insert = SQL(
            "INSERT INTO {table} (originator_id, kind, key, originator_version, ref) "
            "SELECT * FROM unnest(%b::{id_type}[], %b::text[], %b::text[], %b::bigint[], %b::text[])"
        ).format(table=self.table, id_type=self.id_type)

    def _key(self, originator_id: UUID) -> Any:
        return str(originator_id) if self.text_ids else originator_id

    def _columns(self, rows: Sequence[ClaimRow]) -> tuple[list[Any], ...]:
        return ([self._key(row[0]) for row in rows], [row[1] for row in rows], [row[2] for row in rows],
                [row[3] for row in rows], [row[4] for row in rows])  # fmt: skip

    def _create_statements(self) -> list[Composed]:
        return [
            SQL(
                "CREATE TABLE {table} (originator_id {id_type} NOT NULL, kind text NOT NULL, key text NOT NULL, "
                "originator_version bigint NOT NULL, ref text, PRIMARY KEY (originator_id, kind, key))"
            ).format(table=self.table, id_type=self.id_type),
            SQL("CREATE INDEX {name} ON {table} (originator_id, ref) WHERE ref IS NOT NULL").format(
                name=Identifier(f"{TABLE}_ref"), table=self.table
            ),
        ]

    def ensure(self, decode: Decoder, claiming_topics: Sequence[str]) -> None:
        if self._exists():  # a read: processes starting beside a writer do not wait for its lock
            return
        with self.schema_lock(), self.recorder.datastore.get_connection() as conn:
            if self._exists():  # created by another process while this one waited for the lock
                return
            with conn.transaction():
                lock_events_table(self.recorder, conn.cursor())  # no event recorded while the index is filled
                for statement in self._create_statements():
                    conn.execute(statement)
                with conn.cursor(name="ledger_claims_backfill") as reader, conn.cursor() as writer:
                    reader.execute(
                        SQL("SELECT originator_id, originator_version, topic, state FROM {events} "
                            "WHERE topic = ANY(%s) ORDER BY notification_id").format(events=self.events),
                        (list(claiming_topics),),
                    )  # fmt: skip
                    tuples = ((r["originator_id"], r["originator_version"], r["topic"], r["state"]) for r in reader)
                    rows = _backfill_rows(tuples, stored_uuid, decode)
                    for page in _pages(rows, BACKFILL_PAGE_SIZE):
                        # A log that already claims an id twice keeps its first claim: the ledger still opens,
                        # and `verify` names the id recorded twice.
                        writer.execute(self.insert + SQL(" ON CONFLICT DO NOTHING"), self._columns(page))

    def _exists(self) -> bool:
        datastore = self.recorder.datastore
        with datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL AS found", (f"{datastore.schema}.{TABLE}",))
            row = cursor.fetchone()
        return bool(row and row["found"])

    def install(self) -> None:
        """Insert the rows in `_insert_events`, not after the events in `_insert_stored_events`: the library
        catches an exception raised there and leaves its transaction to commit before raising it again, so an
        error of ours on the client's side would commit the events without their claims."""

        def with_claims(insert_events: Insert) -> Insert:
            def insert_with_claims(cursor: Any, stored_events: Any, **kwargs: Any) -> None:
                insert_events(cursor, stored_events, **kwargs)
                rows = kwargs.get(CLAIM_ROWS)
                if rows:
                    lock_events_table(self.recorder, cursor)  # the lock every insert of events takes, first
                    cursor.execute(self.insert, self._columns(rows))

            return insert_with_claims

        wrap_insert_events(self.recorder, with_claims)

    def find(self, wanted: Collection[Wanted]) -> set[Wanted]:
        if not wanted:
            return set()
        ordered = list(wanted)
        # One primary-key probe per id (LATERAL ... LIMIT 1): a semi-join is planned as a scan of the whole index
        # once a member has many claims (measured: the cost of a batch grew with its member's history).
        query = SQL(
            "SELECT w.i FROM unnest(%b::{id_type}[], %b::text[], %b::text[], %b::int[]) AS w(id, kind, key, i) "
            "CROSS JOIN LATERAL (SELECT 1 FROM {table} c WHERE c.originator_id = w.id AND c.kind = w.kind "
            "AND c.key = w.key LIMIT 1) AS hit"
        ).format(table=self.table, id_type=self.id_type)
        parameters = ([self._key(w[0]) for w in ordered], [w[1] for w in ordered], [w[2] for w in ordered],
                      list(range(len(ordered))))  # fmt: skip
        with self.recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute("SET LOCAL jit = off")  # probes of a row each: compiling them costs more than they do
            cursor.execute(query, parameters)
            return {ordered[row["i"]] for row in cursor.fetchall()}

    def purchase_events(self, wanted: Collection[tuple[UUID, str]]) -> list[StoredEvent]:
        if not wanted:
            return []
        ordered = list(wanted)
        query = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            "FROM unnest(%b::{id_type}[], %b::text[]) AS w(id, txn) CROSS JOIN LATERAL ("
            "SELECT originator_version FROM {table} WHERE originator_id = w.id AND kind = 't' AND key = w.txn "
            "UNION ALL SELECT originator_version FROM {table} WHERE originator_id = w.id AND ref = w.txn) AS c "
            "JOIN {events} e ON e.originator_id = w.id AND e.originator_version = c.originator_version "
            "ORDER BY e.originator_id, e.originator_version"
        ).format(table=self.table, events=self.events, id_type=self.id_type)
        with self.recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, ([self._key(w[0]) for w in ordered], [w[1] for w in ordered]))
            rows = cursor.fetchall()
        return [StoredEvent(stored_uuid(r["originator_id"]), r["originator_version"], r["topic"], bytes(r["state"]))
                for r in rows]  # fmt: skip

    def rows_of(self, originator_ids: Collection[UUID]) -> dict[UUID, set[IndexedClaim]]:
        query = SQL(
            "SELECT originator_id, kind, key, originator_version FROM {table} "
            "WHERE originator_id = ANY(%b::{id_type}[])"
        ).format(table=self.table, id_type=self.id_type)
        found: dict[UUID, set[IndexedClaim]] = {originator_id: set() for originator_id in originator_ids}
        with self.recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, ([self._key(originator_id) for originator_id in originator_ids],))
            rows = cursor.fetchall()
        for r in rows:
            found[stored_uuid(r["originator_id"])].add((r["kind"], r["key"], r["originator_version"]))
        return found


class _SQLiteClaims:
    """Member ids are kept as 16-byte BLOBs, not as the events table's 32-digit hex text: the index's inserts took
    a third less time so (measured beside the events' own inserts)."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.events = recorder.events_table_name
        self.insert = f"INSERT INTO {TABLE} (originator_id, kind, key, originator_version, ref) VALUES (?, ?, ?, ?, ?)"
        #: Filling the index from a log that already claims an id twice keeps the first claim: the ledger still
        #: opens, and `verify` names the id recorded twice.
        self.backfill = self.insert.replace("INSERT INTO", "INSERT OR IGNORE INTO")

    def ensure(self, decode: Decoder, claiming_topics: Sequence[str]) -> None:
        with self.recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,))
            if cursor.fetchone() is not None:
                return
            cursor.execute(
                f"CREATE TABLE {TABLE} (originator_id BLOB NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, "
                "originator_version INTEGER NOT NULL, ref TEXT, PRIMARY KEY (originator_id, kind, key)) WITHOUT ROWID"
            )
            cursor.execute(f"CREATE INDEX {TABLE}_ref ON {TABLE} (originator_id, ref) WHERE ref IS NOT NULL")
            marks = ",".join("?" * len(claiming_topics))
            after = 0
            while True:  # a page of the log at a time: memory does not grow with the log
                cursor.execute(
                    f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events} "
                    f"WHERE topic IN ({marks}) AND rowid > ? ORDER BY rowid LIMIT ?",
                    [*claiming_topics, after, BACKFILL_PAGE_SIZE],
                )
                page = cursor.fetchall()
                if not page:
                    return
                after = page[-1][0]
                rows = list(_backfill_rows(((r[1], r[2], r[3], r[4]) for r in page), stored_uuid, decode))
                cursor.executemany(self.backfill, [(row[0].bytes, *row[1:]) for row in rows])

    def install(self) -> None:
        def with_claims(insert_events: Insert) -> Insert:
            def insert_with_claims(cursor: Any, stored_events: Any, **kwargs: Any) -> Any:
                returning = insert_events(cursor, stored_events, **kwargs)
                rows = kwargs.get(CLAIM_ROWS)
                if rows:
                    cursor.executemany(self.insert, [(row[0].bytes, *row[1:]) for row in rows])
                return returning

            return insert_with_claims

        wrap_insert_events(self.recorder, with_claims)

    def _query_in_chunks(
        self, items: Sequence[Any], row_marks: str, statement: str, parameters: Callable[[list[Any]], list[Any]]
    ) -> Iterator[tuple[list[Any], list[Any]]]:
        """Run `statement` (its `{values}` a VALUES list of `row_marks` per item) per chunk of `items` that
        SQLite takes in one statement; yields each chunk with its rows."""
        with self.recorder.datastore.transaction(commit=False) as cursor:
            for start in range(0, len(items), SQLITE_IDS_PER_QUERY_MAX):
                chunk = list(items[start : start + SQLITE_IDS_PER_QUERY_MAX])
                cursor.execute(statement.format(values=",".join([row_marks] * len(chunk))), parameters(chunk))
                yield chunk, cursor.fetchall()

    def find(self, wanted: Collection[Wanted]) -> set[Wanted]:
        statement = (
            "WITH w(id, kind, key, i) AS (VALUES {values}) SELECT w.i FROM w WHERE EXISTS "
            f"(SELECT 1 FROM {TABLE} c WHERE c.originator_id = w.id AND c.kind = w.kind AND c.key = w.key)"
        )
        found: set[Wanted] = set()
        for chunk, rows in self._query_in_chunks(
            list(wanted), "(?, ?, ?, ?)", statement,
            lambda chunk: [value for i, w in enumerate(chunk) for value in (w[0].bytes, w[1], w[2], i)],
        ):  # fmt: skip
            found.update(chunk[row[0]] for row in rows)
        return found

    def purchase_events(self, wanted: Collection[tuple[UUID, str]]) -> list[StoredEvent]:
        statement = (
            "WITH w(id, txn) AS (VALUES {values}), c(id, version) AS ("
            f"SELECT w.id, k.originator_version FROM w JOIN {TABLE} k ON k.originator_id = w.id "
            "AND k.kind = 't' AND k.key = w.txn UNION ALL "
            f"SELECT w.id, k.originator_version FROM w JOIN {TABLE} k ON k.originator_id = w.id "
            f"AND k.ref = w.txn) SELECT e.originator_id, e.originator_version, e.topic, e.state FROM c "
            f"JOIN {self.events} e ON e.originator_id = lower(hex(c.id)) AND e.originator_version = c.version "
            "ORDER BY e.originator_id, e.originator_version"
        )
        events: list[StoredEvent] = []
        for _, rows in self._query_in_chunks(
            list(wanted), "(?, ?)", statement, lambda chunk: [value for w in chunk for value in (w[0].bytes, w[1])]
        ):
            events.extend(StoredEvent(UUID(hex=row[0]), row[1], row[2], bytes(row[3])) for row in rows)
        return events

    def rows_of(self, originator_ids: Collection[UUID]) -> dict[UUID, set[IndexedClaim]]:
        statement = (
            "WITH w(id) AS (VALUES {values}) SELECT c.originator_id, c.kind, c.key, c.originator_version FROM w "
            f"JOIN {TABLE} c ON c.originator_id = w.id"
        )
        found: dict[UUID, set[IndexedClaim]] = {originator_id: set() for originator_id in originator_ids}
        for _, rows in self._query_in_chunks(
            list(originator_ids), "(?)", statement, lambda chunk: [originator_id.bytes for originator_id in chunk]
        ):
            for row in rows:
                found[UUID(bytes=row[0])].add((row[1], row[2], row[3]))
        return found


class _MemoryClaims:
    """The in-memory store's index: a dict, checked and filled under the recorder's own lock."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.rows: dict[tuple[UUID, str, str], tuple[int, str | None]] = {}

    def ensure(self, decode: Decoder, claiming_topics: Sequence[str]) -> None:
        """An in-memory ledger starts empty: nothing to fill."""

    def install(self) -> None:
        def with_claims(insert_events: Insert) -> Insert:
            def insert_with_claims(stored_events: Any, **kwargs: Any) -> Any:
                rows: Sequence[ClaimRow] = kwargs.get(CLAIM_ROWS) or ()
                with memory_lock(self.recorder):
                    keys = [(row[0], row[1], row[2]) for row in rows]
                    if len(set(keys)) != len(keys) or any(key in self.rows for key in keys):
                        raise IntegrityError("an id is claimed twice for the same member")
                    returning = insert_events(stored_events, **kwargs)
                    for key, row in zip(keys, rows, strict=True):
                        self.rows[key] = (row[3], row[4])
                    return returning

            return insert_with_claims

        wrap_insert_events(self.recorder, with_claims)

    def find(self, wanted: Collection[Wanted]) -> set[Wanted]:
        return {w for w in wanted if w in self.rows}

    def purchase_events(self, wanted: Collection[tuple[UUID, str]]) -> list[StoredEvent]:
        events: list[StoredEvent] = []
        for originator_id, transaction_id in sorted(set(wanted)):
            versions = sorted(
                version
                for (member, kind, key), (version, ref) in self.rows.items()
                if member == originator_id
                and ((kind == Kind.TRANSACTION and key == transaction_id) or ref == transaction_id)
            )
            for version in versions:
                events.extend(self.recorder.select_events(originator_id, gt=version - 1, lte=version))
        return events

    def rows_of(self, originator_ids: Collection[UUID]) -> dict[UUID, set[IndexedClaim]]:
        found: dict[UUID, set[IndexedClaim]] = {originator_id: set() for originator_id in originator_ids}
        for (member, kind, key), (version, _) in self.rows.items():
            if member in found:
                found[member].add((kind, key, version))
        return found
