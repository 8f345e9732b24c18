"""Keeping views current: batched catch-up, rebuild into fresh tables with a swap, and state for `status`.

Catch-up reads the log after a view's position with the library's recorder, in pages, and writes each page's
rows with the view's tracking record in one transaction: exactly once, however many processes catch up at
the same moment. Every writing transaction first takes the view's row in `pl_view_state` (a row lock on
PostgreSQL, the write lock on SQLite), then reads the position it continues from, so two writers take turns
instead of colliding. The library's ProjectionRunner commits once per event (about 960 events/s measured);
a page of events per transaction is about 30 times faster.
"""

from __future__ import annotations

import contextlib
import gc
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from eventsourcing.persistence import Notification

from ledger.application import LedgerApplication
from ledger.member import Member
from ledger.micros import from_micros, to_micros
from ledger.pgconnect import schema_lock
from projections.db import Sql, ViewDatabase
from projections.views import VIEWS, LogEvent, Rows, View, placeholders

#: Log events per catch-up transaction.
CATCH_UP_BATCH = 500
#: Log events per transaction while rebuilding (fresh tables, nobody else writes them).
REBUILD_BATCH = 2_000
#: Suffix of the tables a rebuild writes before it swaps them in.
REBUILD_SUFFIX = "__new"
STATE_TABLE = "pl_view_state"
#: PostgreSQL's memory per sort or hash in an answer's transaction: reports group hundreds of thousands of
#: rows by member, which the server's default (4 MB) would spill to disk.
READ_WORK_MEM = "64MB"

#: Told after each batch: (events applied in the batch, position reached).
OnBatch = Callable[[int, int], None]


class UnknownViewError(ValueError):
    """A view name that is not one of VIEWS."""


def select_views(names: Iterable[str] = ()) -> list[View]:
    """The views named (all when none), in VIEWS order."""
    wanted = list(dict.fromkeys(names))
    unknown = [name for name in wanted if name not in VIEWS]
    if unknown:
        raise UnknownViewError(f"unknown view(s) {', '.join(unknown)}; the views are {', '.join(VIEWS)}")
    return [view for name, view in VIEWS.items() if not wanted or name in wanted]


@dataclass(frozen=True, slots=True)
class ViewStatus:
    name: str
    position: int
    head: int
    advanced_at: datetime | None
    rebuilt_at: datetime | None

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)


class Projections:
    """The views of one ledger: create, catch up, rebuild, report their state."""

    def __init__(self, app: LedgerApplication) -> None:
        self.app = app
        self.db = ViewDatabase(app)
        self._create_tables()

    def _create_tables(self) -> None:
        with schema_lock(self.app.store), self.db.transaction(commit=True) as sql:
            sql.execute(
                f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (view TEXT NOT NULL PRIMARY KEY, "
                "advanced_at BIGINT, rebuilt_at BIGINT)"
            )
            sql.executemany(
                f"INSERT INTO {STATE_TABLE} (view) VALUES (?) ON CONFLICT (view) DO NOTHING",
                [(name,) for name in VIEWS],
            )
            for view in VIEWS.values():
                for statement in [*view.create_statements(""), *(create for _, create in view.index_statements(""))]:
                    sql.execute(statement)

    # ---- catching up ------------------------------------------------------------------------------

    def catch_up(
        self, views: Sequence[View] | None = None, *, stop: int | None = None, on_batch: OnBatch | None = None
    ) -> int:
        """Apply what the log recorded after each view's position (up to `stop`); the lowest position reached."""
        chosen = list(VIEWS.values()) if views is None else list(views)
        while True:
            with self.db.transaction(commit=False) as sql:  # one round trip when there is nothing to do
                position, head = min(self._positions_in(sql, chosen).values()), self.db.head_in(sql)
            if position >= (head if stop is None else min(stop, head)):
                return position
            events = self.read_log(position + 1, CATCH_UP_BATCH, stop)
            if not events:
                return position
            with self.db.transaction(commit=True) as sql:
                applied = sum(self._apply(sql, view, events) for view in chosen)
            if on_batch is not None:
                on_batch(applied, events[-1].position)

    def _apply(self, sql: Sql, view: View, events: Sequence[LogEvent]) -> int:
        """Apply the events after the view's position as read under its lock; how many were applied."""
        lock_view(sql, view.name)
        position = self._position_in(sql, view)
        todo = [event for event in events if event.position > position]
        if not todo:
            return 0
        view.apply(sql, todo, "")
        self.db.insert_tracking(sql, view.tracking_name, todo[-1].position)
        sql.execute(f"UPDATE {STATE_TABLE} SET advanced_at = ? WHERE view = ?", (_now_micros(), view.name))
        return len(todo)

    def _position_in(self, sql: Sql, view: View) -> int:
        return self._positions_in(sql, [view])[view.name]

    def _positions_in(self, sql: Sql, views: Sequence[View]) -> dict[str, int]:
        """Each view's position as this transaction sees it (0: nothing applied yet)."""
        names = {view.tracking_name: view.name for view in views}
        rows = sql.rows(
            f"SELECT application_name, notification_id FROM {self.db.tracking_table} "
            f"WHERE application_name IN ({placeholders(len(names))})",
            list(names),
        )
        found = {names[row["application_name"]]: int(row["notification_id"]) for row in rows}
        return {view.name: found.get(view.name, 0) for view in views}

    def read_log(self, start: int, limit: int, stop: int | None = None) -> list[LogEvent]:
        """Up to `limit` decoded log events from position `start` (to `stop`)."""
        return self.decode(self.app.recorder.select_notifications(start=start, limit=limit, stop=stop))

    def decode(self, notifications: Sequence[Notification]) -> list[LogEvent]:
        events: list[LogEvent] = []
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            if not isinstance(event, Member.Event):
                raise TypeError(f"unexpected event {type(event).__name__} at log position {notification.id}")
            events.append(LogEvent.of(notification, event))
        return events

    @contextmanager
    def reading(self, views: Sequence[View] | None = None) -> Iterator[tuple[Sql, int]]:
        """Catch `views` (all by default) up, then one consistent read transaction and the log position it reflects.

        No answer is ever stale: whatever the log recorded before the call is in the views read."""
        chosen = list(VIEWS.values()) if views is None else list(views)
        asked_at: int | None = None  # the log head when the question was asked
        while True:
            with self.db.transaction(commit=False) as sql:
                if sql.dialect == "postgresql":  # one snapshot for every statement of the answer
                    sql.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    sql.execute(f"SET LOCAL work_mem = '{READ_WORK_MEM}'")
                position = min(self._positions_in(sql, chosen).values())
                asked_at = self.db.head_in(sql) if asked_at is None else asked_at
                if position >= asked_at:  # everything recorded before the question is in: answer
                    yield sql, position
                    return
            self.catch_up(chosen)  # behind: catch up outside the read transaction, then read again

    # ---- rebuilding -------------------------------------------------------------------------------

    def rebuild(self, views: Sequence[View], on_batch: OnBatch | None = None) -> int:
        """Build `views` from the whole log into fresh tables, then swap them in, in one transaction.

        Readers keep reading the old tables until the swap commits; a rebuild killed before it leaves the old
        views serving and fresh tables that the next rebuild drops first. Returns the position swapped in."""
        with self.db.transaction(commit=True) as sql:
            for view in views:
                for table in view.tables:
                    sql.execute(f"DROP TABLE IF EXISTS {table}{REBUILD_SUFFIX}")
                for statement in view.create_statements(REBUILD_SUFFIX):
                    sql.execute(statement)
        builders = [view.builder(REBUILD_SUFFIX) for view in views]
        built = 0
        # The collector is paused while building: the members' states kept in memory would otherwise be walked
        # over and over, and the batch's own objects are freed by reference counting anyway.
        collecting = gc.isenabled()
        gc.disable()
        try:
            with BatchWriter(self.db, on_batch) as writer:
                for notifications in prefetched_pages(self.app, REBUILD_BATCH, self.db.head()):
                    events = self.decode(notifications)
                    writer.put(
                        [rows for builder in builders for rows in builder.add(events)], len(events), events[-1].position
                    )
                    built = events[-1].position
                writer.put([rows for builder in builders for rows in builder.finish()], 0, built)
            if self.db.dialect == "postgresql":  # indexes built before the swap: readers wait for none of it
                with self.db.transaction(commit=True) as sql:
                    for view in views:
                        for _, statement in view.index_statements(REBUILD_SUFFIX):
                            sql.execute(statement)
                self.db.vacuum([table + REBUILD_SUFFIX for view in views for table in view.tables])
        finally:
            if collecting:
                gc.enable()
        return self._swap(views, built)

    def _swap(self, views: Sequence[View], built: int) -> int:
        with self.db.transaction(commit=True) as sql:
            for view in views:
                lock_view(sql, view.name)
            while True:  # what was recorded while building, applied under the locks
                events = self.read_log(built + 1, REBUILD_BATCH)
                if not events:
                    break
                for view in views:
                    view.apply(sql, events, REBUILD_SUFFIX)
                built = events[-1].position
            for view in views:
                for table in view.tables:
                    sql.execute(f"DROP TABLE IF EXISTS {table}")
                    sql.execute(f"ALTER TABLE {table}{REBUILD_SUFFIX} RENAME TO {table}")
                    if sql.dialect == "postgresql":  # constraint (and its index) names are unique per schema
                        old = f"{table}{REBUILD_SUFFIX}_pkey"
                        sql.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {old} TO {table}_pkey")
                for (built_name, _), (name, statement) in zip(
                    view.index_statements(REBUILD_SUFFIX), view.index_statements(""), strict=True
                ):
                    if sql.dialect == "postgresql":  # built before the swap; index names are unique per schema
                        sql.execute(f"ALTER INDEX {built_name} RENAME TO {name}")
                    else:  # SQLite cannot rename an index: build it now
                        sql.execute(statement)
                self.db.reset_tracking(sql, view.tracking_name, built)
                now = _now_micros()
                sql.execute(
                    f"UPDATE {STATE_TABLE} SET advanced_at = ?, rebuilt_at = ? WHERE view = ?", (now, now, view.name)
                )
        return built

    # ---- state ------------------------------------------------------------------------------------

    def status(self) -> list[ViewStatus]:
        head = self.db.head()
        with self.db.transaction(commit=False) as sql:
            state = {r["view"]: r for r in sql.rows(f"SELECT view, advanced_at, rebuilt_at FROM {STATE_TABLE}")}
            return [
                ViewStatus(
                    view.name,
                    self._position_in(sql, view),
                    head,
                    _time_or_none(state[view.name]["advanced_at"]),
                    _time_or_none(state[view.name]["rebuilt_at"]),
                )
                for view in VIEWS.values()
            ]


#: Batches computed ahead of the one being written.
WRITE_AHEAD_BATCHES = 2


class BatchWriter:
    """Appends each batch's rows in a transaction of its own, in a thread: while the database stores one batch
    (on the other core), Python computes the next. `on_batch` is told after each commit. An error in the
    thread is raised to the caller at its next `put` or on leaving."""

    def __init__(self, db: ViewDatabase, on_batch: OnBatch | None) -> None:
        self.db = db
        self.on_batch = on_batch
        self.batches: queue.Queue[tuple[list[Rows], int, int] | None] = queue.Queue(maxsize=WRITE_AHEAD_BATCHES)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._write, name="view-writer", daemon=True)

    def __enter__(self) -> BatchWriter:
        self.thread.start()
        return self

    def put(self, rows: list[Rows], events: int, position: int) -> None:
        self._raise_error()
        self.batches.put((rows, events, position))

    def __exit__(self, *exc: object) -> None:
        self.batches.put(None)
        self.thread.join()
        self._raise_error()

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _write(self) -> None:
        while (batch := self.batches.get()) is not None:
            if self.error is not None:
                continue  # drain: the caller raises at its next put
            rows, events, position = batch
            try:
                with self.db.transaction(commit=True) as sql:
                    for table_rows in rows:
                        sql.copy(table_rows.table, table_rows.columns, table_rows.rows)
                if self.on_batch is not None and events:
                    self.on_batch(events, position)
            except BaseException as error:  # handed to the caller
                self.error = error


#: Pages read ahead of the one being applied.
PREFETCH_PAGES = 2


def prefetched_pages(app: LedgerApplication, page_size: int, stop: int) -> Iterator[Sequence[Notification]]:
    """The log up to `stop`, page by page, the next pages read by a thread while the caller works on one:
    the database sends rows while Python decodes and applies (the wait is off the critical path)."""
    pages: queue.Queue[Sequence[Notification] | BaseException | None] = queue.Queue(maxsize=PREFETCH_PAGES)
    stopping = threading.Event()

    def read() -> None:
        start = 1
        try:
            while start <= stop and not stopping.is_set():
                page = app.recorder.select_notifications(start=start, limit=page_size, stop=stop)
                if not page:
                    break
                pages.put(page)
                start = page[-1].id + 1
            pages.put(None)
        except BaseException as error:  # handed to the caller, who raises it
            pages.put(error)

    reader = threading.Thread(target=read, name="log-prefetch", daemon=True)
    reader.start()
    try:
        while (page := pages.get()) is not None:
            if isinstance(page, BaseException):
                raise page
            yield page
    finally:
        stopping.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            with contextlib.suppress(queue.Empty):
                pages.get_nowait()
            reader.join(timeout=0.05)


def lock_view(sql: Sql, name: str) -> None:
    """Take the view's state row for this transaction: writers of one view take turns."""
    sql.execute(f"UPDATE {STATE_TABLE} SET view = view WHERE view = ?", (name,))


def _now_micros() -> int:
    return to_micros(datetime.now(UTC))


def _time_or_none(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)
