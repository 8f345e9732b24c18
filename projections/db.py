"""The read models' database: the ledger's own (PostgreSQL or SQLite), reached through the library's datastore.

Views live beside the events so that a view's rows and its tracking record commit in one transaction
(exactly once), and so that a query can catch a view up and read it on the same connection. SQL is written
once with `?` placeholders; on PostgreSQL they become `%s`. Times are stored as integer microseconds since
the epoch (UTC): exact, indexable, compared the same way in both databases.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg.rows import dict_row

from ledger.application import LedgerApplication
from ledger.eventsourcing_adapter import insert_tracking
from ledger.storage.pgconnect import connection_kwargs, schema_lock

Dialect = Literal["sqlite", "postgresql"]
#: The views' tracking table on PostgreSQL (not `ledger_tracking`, the write side's own Kafka positions).
#: SQLite has one tracking table for everything; the views' names (`view:…`) keep them apart there.
VIEW_TRACKING_TABLE = "ledger_view_tracking"
#: Rows fetched at once by `Sql.stream`: what a streamed answer holds in memory, whatever its size.
STREAM_PAGE_ROWS = 2_000
#: Seconds a streamed read on PostgreSQL may wait for its reader (a slow pipe) before the server ends it.
STREAM_IDLE_S_MAX = 600
#: Server-side cursors need names unique within their transaction.
_stream_names = itertools.count()


class ViewsUnavailableError(RuntimeError):
    """The store has no SQL database to keep views in (memory://)."""


def placeholders(count: int) -> str:
    return ",".join("?" * count)


@dataclass(frozen=True, slots=True)
class Rows:
    """Rows to append to one table, with the PostgreSQL type of each column (for a binary COPY)."""

    table: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    types: tuple[str, ...]


class Sql:
    """One open transaction: execute, executemany and fetch with `?` placeholders in either dialect."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self.cursor = cursor
        self.dialect = dialect
        self._streams: list[Generator[Any]] = []

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgresql" else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self.cursor.execute(self._sql(statement), tuple(params))

    def execute_settings(self, statements: Sequence[str]) -> None:
        """Parameterless statements (SET …) in one round trip: PostgreSQL's simple query protocol takes several
        at once; SQLite's cursor one at a time."""
        if self.dialect == "postgresql":
            self.cursor.execute("; ".join(statements))
        else:
            for statement in statements:
                self.cursor.execute(statement)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.cursor.executemany(self._sql(statement), [tuple(row) for row in rows])

    def copy(self, rows: Rows) -> None:
        """Append rows in bulk: a binary COPY on PostgreSQL (several times faster than INSERTs, and half the
        work of a text COPY on both sides), executemany on SQLite."""
        if not rows.rows:
            return
        names = ", ".join(rows.columns)
        if self.dialect == "postgresql":
            with self.cursor.copy(f"COPY {rows.table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(rows.types)
                for row in rows.rows:
                    copy.write_row(row)
            return
        self.executemany(f"INSERT INTO {rows.table} ({names}) VALUES ({placeholders(len(rows.columns))})", rows.rows)

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A condition that `column` is one of `values`, and its parameters: one array parameter on PostgreSQL
        (psycopg parses a statement of thousands of placeholders anew each time), a list on SQLite."""
        if self.dialect == "postgresql":
            return f"{column} = ANY(?)", [list(values)]
        return f"{column} IN ({placeholders(len(values))})", list(values)

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """All result rows; each is indexable by column name."""
        self.execute(statement, params)
        return list(self.cursor.fetchall())

    def stream(self, statement: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        """The result rows one at a time, STREAM_PAGE_ROWS fetched at once, whatever the result's size: a
        server-side cursor on PostgreSQL (a client-side one would receive the whole result first), a cursor
        of its own on SQLite. Other statements may run in this transaction while it is read; the stream ends
        with the transaction at the latest (`close_streams`)."""
        rows = self._stream(statement, params)
        self._streams.append(rows)
        return rows

    def close_streams(self) -> None:
        """Close the cursors of streams not read to their end, while their transaction is still open (closed
        later, a server-side cursor's CLOSE would reach whatever transaction holds the connection then)."""
        while self._streams:
            self._streams.pop().close()

    def _stream(self, statement: str, params: Sequence[Any]) -> Generator[Any]:
        if self.dialect == "postgresql":
            # A reader that stops for a while (a slow pipe) must not lose its transaction after the library's 5 s.
            self.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{STREAM_IDLE_S_MAX}s'")
            cursor = self.cursor.connection.cursor(name=f"pl_stream_{next(_stream_names)}", row_factory=dict_row)
            cursor.itersize = STREAM_PAGE_ROWS
        else:
            cursor = self.cursor.sqlite_cursor.connection.cursor()
        try:
            cursor.execute(self._sql(statement), tuple(params))
            while page := cursor.fetchmany(STREAM_PAGE_ROWS):
                yield from page
                del page  # not held while the next one is fetched
        finally:
            cursor.close()

    def row(self, statement: str, params: Sequence[Any] = ()) -> Any:
        self.execute(statement, params)
        return self.cursor.fetchone()

    def scalar(self, statement: str, params: Sequence[Any] = ()) -> Any:
        row = self.row(statement, params)
        if row is None:
            return None
        return row[next(iter(row.keys()))] if hasattr(row, "keys") else row[0]

    def table_exists(self, table: str) -> bool:
        if self.dialect == "postgresql":
            return self.scalar("SELECT to_regclass(?) IS NOT NULL", (table,)) is True
        return self.row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)) is not None


@contextmanager
def closing_streams(sql: Sql) -> Iterator[Sql]:
    """`sql` for the body of its transaction; its streams end before the transaction does."""
    try:
        yield sql
    finally:
        sql.close_streams()


class ViewDatabase:
    """The ledger database seen by the views: transactions, the log, and the views' tracking records."""

    def __init__(self, app: LedgerApplication) -> None:
        datastore = getattr(app.recorder, "datastore", None)
        self.app = app
        self.dialect: Dialect
        if isinstance(datastore, PostgresDatastore):
            self.dialect = "postgresql"
            self.tracking: TrackingRecorder = PostgresTrackingRecorder(
                datastore, tracking_table_name=VIEW_TRACKING_TABLE
            )
            self.tracking_table = VIEW_TRACKING_TABLE
        elif isinstance(datastore, SQLiteDatastore):
            self.dialect = "sqlite"
            self.tracking = SQLiteTrackingRecorder(datastore)
            self.tracking_table = "tracking"
        else:
            raise ViewsUnavailableError(
                f"the store {app.store.describe()} keeps no views (use sqlite:///FILE or postgresql://…), "
                "or answer from the log with --from-log"
            )
        self.datastore: PostgresDatastore | SQLiteDatastore = datastore
        with schema_lock(app.store):
            self.tracking.create_table()

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Sql]:
        """A transaction; with `commit`, one that writes (committed at the end, rolled back on an error)."""
        if commit and isinstance(self.datastore, SQLiteDatastore):
            with self._sqlite_write_transaction() as sql:
                yield sql
            return
        with self.datastore.transaction(commit=commit) as cursor, closing_streams(Sql(cursor, self.dialect)) as sql:
            yield sql

    @contextmanager
    def _sqlite_write_transaction(self) -> Iterator[Sql]:
        """BEGIN IMMEDIATE, not the library's deferred BEGIN: a deferred transaction that has read and then
        writes fails at once with "database is locked" when another process wrote in between (SQLite does
        not wait on the lock there, to avoid a deadlock). Taking the write lock first waits for it instead,
        up to the store's lock timeout."""
        if not isinstance(self.datastore, SQLiteDatastore):
            raise TypeError("not an SQLite store")
        with self.datastore.get_connection(commit=True) as connection:
            cursor = connection.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                with closing_streams(Sql(cursor, "sqlite")) as sql:
                    yield sql
            except BaseException:
                connection.rollback()
                raise
            else:
                connection.commit()
            finally:
                cursor.sqlite_cursor.close()

    def vacuum(self, tables: Sequence[str]) -> None:
        """VACUUM (ANALYZE) fresh tables on PostgreSQL: statistics for the planner, and the visibility map that
        lets covering indexes answer without reading the table (autovacuum would get there, later)."""
        if self.dialect != "postgresql":
            return
        with psycopg.connect(**connection_kwargs(self.app.store), autocommit=True) as connection:
            for table in tables:
                connection.execute(f"VACUUM (ANALYZE) {table}")

    def insert_tracking(self, sql: Sql, name: str, position: int) -> None:
        """Move a view's position forward, in the caller's transaction (the library raises IntegrityError on a
        position that does not move forward: someone else recorded it, and this transaction rolls back)."""
        insert_tracking(self.tracking, sql.cursor, Tracking(name, position))

    def reset_tracking(self, sql: Sql, name: str, position: int) -> None:
        """Set a view's position to `position`, whatever it was (a rebuild swapping in new tables)."""
        sql.execute(f"DELETE FROM {self.tracking_table} WHERE application_name = ?", (name,))
        if position > 0:
            self.insert_tracking(sql, name, position)

    def position(self, name: str) -> int:
        """A view's position: the last log notification id it reflects (0: none)."""
        return self.tracking.max_tracking_id(name) or 0

    def head(self) -> int:
        """The log's last notification id (0 when empty)."""
        return self.app.recorder.max_notification_id() or 0

    def head_statement(self) -> str:
        """The query of the log's head (NULL when empty), to read it in a transaction with other things."""
        column = "notification_id" if self.dialect == "postgresql" else "rowid"
        return f"SELECT MAX({column}) FROM {self.app.recorder.events_table_name}"  # type: ignore[attr-defined]
