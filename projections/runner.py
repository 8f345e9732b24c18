"""Keeping views current: batched catch-up, rebuild into fresh tables with a swap, and state for `status`.

Catch-up reads the log after a view's position with the library's recorder, in pages, and writes each page's
rows with the view's tracking record in one transaction: exactly once, however many processes catch up at
the same moment. Every writing transaction first takes the view's row in `pl_view_state` (a row lock on
PostgreSQL, the write lock on SQLite), then reads the position it continues from, so two writers take turns
instead of colliding. The library's ProjectionRunner commits once per event (about 960 events/s measured);
a page of events per transaction is about 30 times faster.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from ledger.application import LedgerApplication
from ledger.micros import from_micros, to_micros
from ledger.storage.chain import UNKEYED, Chain
from ledger.storage.pgconnect import schema_lock
from projections.building import (
    REBUILD_BATCH,
    REBUILD_SUFFIX,
    OnBatch,
    build_fresh,
    decode,
    prefetched_pages,
    whole_log,
)
from projections.db import Dialect, Sql, ViewDatabase, placeholders
from projections.defaults import PARALLEL_REBUILD_MIN_EVENTS, REBUILD_WORKERS_MAX
from projections.log_check import (
    Acceptance,
    LogChange,
    TrailCheck,
    first_change,
    record_acceptance,
    refusal,
    unchecked,
)
from projections.partitions import build_in_workers
from projections.views import VIEWS, AuditView, LogEvent, View

#: Log events per catch-up transaction.
CATCH_UP_BATCH = 500
STATE_TABLE = "pl_view_state"
#: PostgreSQL's memory per sort or hash in an answer's transaction: reports group hundreds of thousands of
#: rows by member, which the server's default (4 MB) would spill to disk.
READ_WORK_MEM = "64MB"


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
        #: How the audit trail's hash chains are hashed (keyed when the ledger has a chain key).
        self.chain = app.store.chain
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
                positions, head = self._positions_and_head_in(sql, chosen)
                position = min(positions.values())
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
        view.apply(sql, todo, "", self.chain)
        self.db.insert_tracking(sql, view.tracking_name, todo[-1].position)
        sql.execute(f"UPDATE {STATE_TABLE} SET advanced_at = ? WHERE view = ?", (_now_micros(), view.name))
        return len(todo)

    def _position_in(self, sql: Sql, view: View) -> int:
        return self._positions_in(sql, [view])[view.name]

    def _positions_and_head_in(self, sql: Sql, views: Sequence[View]) -> tuple[dict[str, int], int]:
        """`_positions_in` and the log's head (`ViewDatabase.head_statement`), in one query: every answer asks both."""
        names = {view.tracking_name: view.name for view in views}
        rows = sql.rows(
            f"SELECT application_name, notification_id FROM {self.db.tracking_table} "
            f"WHERE application_name IN ({placeholders(len(names))}) UNION ALL "
            f"SELECT NULL, ({self.db.head_statement()})",
            list(names),
        )
        head = next((int(row["notification_id"] or 0) for row in rows if row["application_name"] is None), 0)
        found = {names[row["application_name"]]: int(row["notification_id"]) for row in rows if row["application_name"]}
        return {view.name: found.get(view.name, 0) for view in views}, head

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
        return decode(self.app, self.app.recorder.select_notifications(start=start, limit=limit, stop=stop))

    @contextmanager
    def reading(
        self, views: Sequence[View] | None = None, first: Callable[[Sql], object] | None = None
    ) -> Iterator[tuple[Sql, int]]:
        """Catch `views` (all by default) up, then one consistent read transaction and the log position it reflects.

        No answer is ever stale: whatever the log recorded before the call is in the views read. `first(sql)`
        runs first in each read transaction, before anything is caught up (a server checks the caller's key
        there: a request it refuses costs no catching up)."""
        chosen = list(VIEWS.values()) if views is None else list(views)
        asked_at: int | None = None  # the log head when the question was asked
        while True:
            with self.db.transaction(commit=False) as sql:
                if sql.dialect == "postgresql":  # one snapshot for every statement of the answer
                    sql.execute_settings(
                        ["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", f"SET LOCAL work_mem = '{READ_WORK_MEM}'"]
                    )
                if first is not None:
                    first(sql)
                positions, head = self._positions_and_head_in(sql, chosen)
                position = min(positions.values())
                asked_at = head if asked_at is None else asked_at
                if position >= asked_at:  # everything recorded before the question is in: answer
                    yield sql, position
                    return
            self.catch_up(chosen)  # behind: catch up outside the read transaction, then read again

    # ---- rebuilding -------------------------------------------------------------------------------

    def rebuild(
        self,
        views: Sequence[View],
        on_batch: OnBatch | None = None,
        *,
        workers: int | None = None,
        accept: Acceptance | None = None,
    ) -> Rebuilt:
        """Build `views` from the whole log into fresh tables, then swap them in, in one transaction.

        Readers keep reading the old tables until the swap commits; a rebuild killed before it leaves the old
        views serving and fresh tables that the next rebuild drops first. `workers` processes build it, one
        partition of the members each (see rebuild_workers for the default).

        Rebuilding the audit view, the fresh trail's hashes must equal the old trail's up to the position it
        reflected (projections.log_check): where the log changed since, it raises LogChangedError and swaps
        nothing in, unless `accept` says to rebuild from the log as it is (then recorded with the swap). The
        first rebuild with a chain key over an unkeyed trail builds the trail unkeyed first to check it."""
        stop = self.db.head()
        parts = rebuild_workers(self.db.dialect, stop, workers)
        check = self._trail_check(views)
        change: LogChange | None = None
        if check is not None and check.mode == UNKEYED and self.chain.keyed:
            audit = [view for view in views if isinstance(view, AuditView)]
            self._build(audit, stop, parts, None, Chain())
            change = self._compare(audit, check, accept)
        elif check is not None and check.mode != self.chain.mode and accept is None:
            raise unchecked(check, self.chain.mode)
        self._build(views, stop, parts, on_batch, self.chain)
        if check is not None and check.mode == self.chain.mode:
            change = self._compare(views, check, accept)
        if self.db.dialect == "postgresql":
            self.db.vacuum([table + REBUILD_SUFFIX for view in views for table in view.tables])
        checked = check is None or check.mode in {self.chain.mode, UNKEYED}  # else keyed with another key

        def record(sql: Sql) -> None:
            if accept is not None and check is not None:
                record_acceptance(sql, accept, check, change, checked=checked, mode=self.chain.mode)

        return Rebuilt(self._swap(views, stop, record), change, checked)

    def _trail_check(self, views: Sequence[View]) -> TrailCheck | None:
        """The old audit trail a rebuild of `views` must check the log against; None if it replaces none."""
        audit = [view for view in views if isinstance(view, AuditView)]
        if not audit:
            return None
        with self.db.transaction(commit=False) as sql:
            position, mode = self._position_in(sql, audit[0]), AuditView.chain_mode(sql)
        return None if mode is None or position == 0 else TrailCheck(position, mode)

    def _build(self, views: Sequence[View], stop: int, parts: int, on_batch: OnBatch | None, chain: Chain) -> None:
        """The views' fresh tables, built from the log up to `stop`, the audit trail hashed with `chain`; on
        PostgreSQL with their keys and indexes (built before the swap: readers wait for none of it)."""
        postgresql = self.db.dialect == "postgresql"  # keys and indexes after the load (SQLite cannot add a key)
        with self.db.transaction(commit=True) as sql:
            for view in views:
                for table in view.tables:
                    sql.execute(f"DROP TABLE IF EXISTS {table}{REBUILD_SUFFIX}")
                for statement in view.create_statements(REBUILD_SUFFIX, keyed=not postgresql):
                    sql.execute(statement)
                if isinstance(view, AuditView):
                    view.continue_chain(sql, REBUILD_SUFFIX, chain)  # the fresh trail's mode
        if parts > 1:
            build_in_workers(self.app, views, stop, parts, on_batch, chain=chain)
        else:
            pages = prefetched_pages(whole_log(self.app), REBUILD_BATCH, stop)
            build_fresh(self.app, self.db, views, pages, on_batch, chain=chain)
        if postgresql:
            with self.db.transaction(commit=True) as sql:
                for view in views:
                    indexes = [create for _, create in view.index_statements(REBUILD_SUFFIX)]
                    for statement in [*view.key_statements(REBUILD_SUFFIX), *indexes]:
                        sql.execute(statement)

    def _compare(self, views: Sequence[View], check: TrailCheck, accept: Acceptance | None) -> LogChange | None:
        """The first difference between the old trail and the fresh one; without `accept`, a difference drops
        the fresh tables and raises LogChangedError."""
        with self.db.transaction(commit=False) as sql:
            change = first_change(sql, check, "pl_audit" + REBUILD_SUFFIX)
        if change is None or accept is not None:
            return change
        with self.db.transaction(commit=True) as sql:
            for view in views:
                for table in view.tables:
                    sql.execute(f"DROP TABLE IF EXISTS {table}{REBUILD_SUFFIX}")
        raise refusal(change)

    def _swap(self, views: Sequence[View], built: int, record: Callable[[Sql], None]) -> int:
        """Swap the fresh tables in, after applying what the log recorded meanwhile; `record` writes in the
        same transaction."""
        with self.db.transaction(commit=True) as sql:
            record(sql)
            for view in views:
                lock_view(sql, view.name)
            while True:  # what was recorded while building, applied under the locks
                events = self.read_log(built + 1, REBUILD_BATCH)
                if not events:
                    break
                for view in views:
                    view.apply(sql, events, REBUILD_SUFFIX, self.chain)
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


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What a rebuild swapped in: the log position it reflects, and the log change it was told to accept."""

    position: int
    accepted: LogChange | None = None
    #: False when the trail it replaced was keyed with another key, so the log could not be checked against it.
    log_checked: bool = True


class RebuildWorkersError(ValueError):
    """A number of rebuild workers this database cannot take."""


def rebuild_workers(dialect: Dialect, events: int, asked: int | None) -> int:
    """How many processes build a rebuild of `events` log events: `asked`, or by default one per core (at
    most REBUILD_WORKERS_MAX) on PostgreSQL from PARALLEL_REBUILD_MIN_EVENTS, else one. SQLite takes one
    writer at a time: asking it for more than one is an error, not a quiet single process."""
    if asked is not None:
        if not 1 <= asked <= REBUILD_WORKERS_MAX:
            raise RebuildWorkersError(f"workers must be 1..{REBUILD_WORKERS_MAX}, not {asked}")
        if asked > 1 and dialect != "postgresql":
            raise RebuildWorkersError(f"an {dialect} ledger rebuilds in one process (workers 1), not {asked}")
        return asked
    if dialect != "postgresql" or events < PARALLEL_REBUILD_MIN_EVENTS:
        return 1
    return min(os.cpu_count() or 1, REBUILD_WORKERS_MAX)


def lock_view(sql: Sql, name: str) -> None:
    """Take the view's state row for this transaction: writers of one view take turns."""
    sql.execute(f"UPDATE {STATE_TABLE} SET view = view WHERE view = ?", (name,))


def _now_micros() -> int:
    return to_micros(datetime.now(UTC))


def _time_or_none(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)
