"""The log read member by member: members in id order, each member's events in version order.

Checks that look at one member at a time (its hash chain, its event ids, its snapshots, its rows in the
views) then hold one member's state, never every member's: memory does not grow with the ledger. Pages
come by keyset over the events table's primary key (member id, version), up to a log position; on
PostgreSQL, optionally only the members of one partition (a range of member ids, projections.partitions).
The planner is told not to sort or use a bitmap there: with stale statistics it might otherwise sort the
rest of the partition for every page instead of walking the key. Member ids come in the same order on
both databases (PostgreSQL compares UUIDs byte by byte, SQLite their hex text), which is also the order of
their text (`str(uuid)`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from ledger.application import LedgerApplication
from ledger.storage.originators import stored_uuid
from projections.partitions import member_range

#: Events per page.
MEMBER_PAGE = 2_000


class MemberLog:
    """One partition (`part` of `parts`; PostgreSQL only when more than one) of the log up to `stop`, member
    by member, and the snapshots the ledger took of its members."""

    def __init__(self, app: LedgerApplication, stop: int, part: int = 0, parts: int = 1) -> None:
        self.stop = stop
        self.first, self.last = member_range(part, parts)
        datastore = getattr(app.recorder, "datastore", None)
        if parts > 1 and not isinstance(datastore, PostgresDatastore):
            raise TypeError("the log is read by partition on PostgreSQL only")
        if not isinstance(datastore, PostgresDatastore | SQLiteDatastore):
            raise TypeError(f"the store {app.store.describe()} keeps no SQL log")
        self.datastore = datastore
        events: str = app.recorder.events_table_name  # type: ignore[attr-defined]
        snapshots: str | None = None if app.snapshots is None else app.snapshots.recorder.events_table_name  # type: ignore[attr-defined]
        self.events_table, self.snapshots_table = events, snapshots
        self.has_snapshots = snapshots is not None
        if isinstance(datastore, PostgresDatastore):
            self._page = SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state FROM {schema}.{table} "
                "WHERE (originator_id, originator_version) > (%s, %s) AND originator_id <= %s "
                "AND notification_id <= %s ORDER BY originator_id, originator_version LIMIT %s"
            ).format(schema=Identifier(datastore.schema), table=Identifier(events))
            self._snapshots = SQL(
                "SELECT originator_id, originator_version, topic, state FROM {schema}.{table} "
                "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
            ).format(schema=Identifier(datastore.schema), table=Identifier(snapshots or events))

    def pages(self, page_size: int = MEMBER_PAGE) -> Iterator[list[Notification]]:
        """The partition's events up to `stop`, `page_size` at a time, in (member id, version) order."""
        after = (self.first, 0)
        while True:
            rows = self._page_rows(after, page_size)
            if not rows:
                return
            page = [
                Notification(id=int(position), originator_id=stored_uuid(originator), originator_version=int(version),
                             topic=topic, state=bytes(state))
                for position, originator, version, topic, state in rows
            ]  # fmt: skip
            yield page
            if len(rows) < page_size:
                return
            after = (stored_uuid(page[-1].originator_id), page[-1].originator_version)

    def snapshots_of(self, member_ids: Collection[UUID]) -> dict[UUID, dict[int, StoredEvent]]:
        """The stored snapshots of `member_ids`, by member and version."""
        found: dict[UUID, dict[int, StoredEvent]] = {}
        if not self.has_snapshots or not member_ids:
            return found
        for originator, version, topic, state in self._snapshot_rows(list(member_ids)):
            member_id = stored_uuid(originator)
            found.setdefault(member_id, {})[int(version)] = StoredEvent(member_id, int(version), topic, bytes(state))
        return found

    # ---- the two databases ------------------------------------------------------------------------

    def _page_rows(self, after: tuple[UUID, int], size: int) -> list[tuple[Any, ...]]:
        datastore = self.datastore
        if isinstance(datastore, PostgresDatastore):
            params = (after[0], after[1], self.last, self.stop, size)
            return _postgres_rows(datastore, self._page, params, in_key_order=True)
        return _sqlite_rows(
            datastore,
            f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table} "
            "WHERE (originator_id, originator_version) > (?, ?) AND originator_id <= ? AND rowid <= ? "
            "ORDER BY originator_id, originator_version LIMIT ?",
            (after[0].hex, after[1], self.last.hex, self.stop, size),
        )

    def _snapshot_rows(self, member_ids: list[UUID]) -> list[tuple[Any, ...]]:
        datastore = self.datastore
        if isinstance(datastore, PostgresDatastore):
            return _postgres_rows(datastore, self._snapshots, (member_ids,))
        return _sqlite_rows(
            datastore,
            f"SELECT originator_id, originator_version, topic, state FROM {self.snapshots_table} "
            f"WHERE originator_id IN ({','.join('?' * len(member_ids))}) ORDER BY originator_id, originator_version",
            tuple(member_id.hex for member_id in member_ids),  # SQLite holds a UUID as its hex text
        )


def _postgres_rows(
    datastore: PostgresDatastore, statement: Composed, params: tuple[Any, ...], *, in_key_order: bool = False
) -> list[Any]:
    with (
        datastore.get_connection() as connection,
        connection.transaction(force_rollback=True),
        connection.cursor(row_factory=tuple_row) as cursor,
    ):
        if in_key_order:  # walk the primary key, never sort a partition per page
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(statement, params, prepare=True)
        return cursor.fetchall()


def _sqlite_rows(datastore: SQLiteDatastore, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with datastore.transaction(commit=False) as cursor:
        cursor.execute(statement, params)
        return [tuple(row) for row in cursor.fetchall()]
