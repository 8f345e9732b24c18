"""Many aggregates' stored histories (latest snapshot, then the events after it) in two queries.

Loading an aggregate through the library costs two queries (snapshot, then events), even when it has
never been recorded: measured as about a quarter of Kafka consume time while new members arrive, and
nearly all of a sweep's time. A batch of members is read with one query for their latest snapshots and
one for their events after those (per 500 ids on SQLite); members with neither are not stored, and are
started as new ones.

The answer may only err on the side of "stored": a member wrongly taken for new would be started again
at version 1, which the events table's primary key refuses (the batch fails loudly instead of forking a
member's history).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from ledger.storage.backend import Backend

#: Ids per SQLite statement (two parameters each; the default limit on parameters is 32,766 since 3.32).
SQLITE_IDS_PER_QUERY_MAX = 500
#: SQLite statements; `table` is the library's own table name, never input.
_SQLITE_LATEST_SNAPSHOTS = (
    "SELECT originator_id, originator_version, topic, state FROM {table} s WHERE originator_id IN ({marks}) "
    "AND originator_version = (SELECT MAX(originator_version) FROM {table} WHERE originator_id = s.originator_id)"
)
_SQLITE_EVENTS_AFTER = (
    "WITH s(id, after) AS (VALUES {pairs}) SELECT e.originator_id, e.originator_version, e.topic, e.state FROM s "
    "JOIN {table} e ON e.originator_id = s.id AND e.originator_version > s.after "
    "ORDER BY e.originator_id, e.originator_version"
)


def stored_uuid(value: Any) -> UUID:
    """An aggregate id as a store gives it back (a UUID on PostgreSQL, hex or text elsewhere) as a UUID."""
    return value if isinstance(value, UUID) else UUID(str(value))


@dataclass(slots=True)
class StoredHistory:
    """One aggregate as stored: its latest snapshot (if any) and its events after it, oldest first."""

    snapshot: StoredEvent | None = None
    events: list[StoredEvent] = field(default_factory=list)

    @property
    def after(self) -> int:
        return 0 if self.snapshot is None else self.snapshot.originator_version


def stored_histories(
    backend: Backend, events: Any, snapshots: Any, originator_ids: Collection[UUID]
) -> dict[UUID, StoredHistory] | None:
    """The stored histories of those of `originator_ids` that are stored, from the events and snapshots
    recorders of a `backend` store; None where there is no SQL to batch with (in memory: load one by one)."""
    if backend is Backend.POSTGRES:
        return _on_postgres(events, snapshots, originator_ids)
    if backend is Backend.SQLITE:
        return _on_sqlite(events, snapshots, originator_ids)
    return None


def _stored(row: Any, originator_id: UUID) -> StoredEvent:
    return StoredEvent(originator_id, row["originator_version"], row["topic"], bytes(row["state"]))


def _on_postgres(events: Any, snapshots: Any, originator_ids: Collection[UUID]) -> dict[UUID, StoredHistory]:
    if not originator_ids:
        return {}
    text_ids = events.datastore.originator_id_type == "text"
    id_type = SQL("text" if text_ids else "uuid")
    schema = Identifier(events.datastore.schema)
    latest_snapshots = SQL(
        "SELECT DISTINCT ON (originator_id) originator_id, originator_version, topic, state FROM {schema}.{table} "
        "WHERE originator_id = ANY(%s::{id_type}[]) ORDER BY originator_id, originator_version DESC"
    ).format(schema=schema, table=Identifier(snapshots.events_table_name), id_type=id_type)
    # One primary-key probe per id (LATERAL): a plain join may be planned as a scan of the whole table.
    events_after = SQL(
        "SELECT e.originator_id, e.originator_version, e.topic, e.state "
        "FROM unnest(%s::{id_type}[], %s::bigint[]) AS s(id, after) CROSS JOIN LATERAL ("
        "SELECT originator_id, originator_version, topic, state FROM {schema}.{table} "
        "WHERE originator_id = s.id AND originator_version > s.after ORDER BY originator_version) AS e"
    ).format(schema=schema, table=Identifier(events.events_table_name), id_type=id_type)
    by_key = {str(i) if text_ids else i: i for i in originator_ids}
    histories: dict[UUID, StoredHistory] = {}
    with events.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cursor:
        # Probes of a few rows each: compiling them (JIT, when statistics overestimate) costs more than they do.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(latest_snapshots, (list(by_key),))
        for row in cursor.fetchall():
            originator_id = by_key[row["originator_id"]]
            histories[originator_id] = StoredHistory(_stored(row, originator_id))
        afters = [histories[i].after if i in histories else 0 for i in by_key.values()]
        cursor.execute(events_after, (list(by_key), afters))
        for row in cursor.fetchall():
            originator_id = by_key[row["originator_id"]]
            histories.setdefault(originator_id, StoredHistory()).events.append(_stored(row, originator_id))
    return histories


def _on_sqlite(events: Any, snapshots: Any, originator_ids: Collection[UUID]) -> dict[UUID, StoredHistory]:
    by_key = {i.hex: i for i in originator_ids}
    keys = list(by_key)
    histories: dict[UUID, StoredHistory] = {}
    with events.datastore.transaction(commit=False) as cursor:
        for start in range(0, len(keys), SQLITE_IDS_PER_QUERY_MAX):
            chunk = keys[start : start + SQLITE_IDS_PER_QUERY_MAX]
            marks = ",".join("?" * len(chunk))
            cursor.execute(_SQLITE_LATEST_SNAPSHOTS.format(table=snapshots.events_table_name, marks=marks), chunk)
            for row in cursor.fetchall():
                originator_id = by_key[row["originator_id"]]
                histories[originator_id] = StoredHistory(_stored(row, originator_id))
            afters = [histories[by_key[key]].after if by_key[key] in histories else 0 for key in chunk]
            pairs = ",".join(["(?, ?)"] * len(chunk))
            cursor.execute(
                _SQLITE_EVENTS_AFTER.format(table=events.events_table_name, pairs=pairs),
                [value for pair in zip(chunk, afters, strict=True) for value in pair],
            )
            for row in cursor.fetchall():
                originator_id = by_key[row["originator_id"]]
                histories.setdefault(originator_id, StoredHistory()).events.append(_stored(row, originator_id))
    return histories
